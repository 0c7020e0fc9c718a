//! The harness's own servers work, and stop and start again with their data.

use maildrop_testkit::{NatsServer, RedisServer};

#[tokio::test]
async fn nats_keeps_its_streams_across_a_restart() -> anyhow::Result<()> {
    let mut nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "T".into(),
        subjects: vec!["t".into()],
        ..Default::default()
    })
    .await?;
    js.publish("t", "x".into()).await?.await?;
    nats.stop().await;
    nats.resume().await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("T").await?;
    assert_eq!(stream.info().await?.state.messages, 1);
    Ok(())
}

#[tokio::test]
async fn redis_answers() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let mut conn = redis.conn().await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    assert_eq!(pong, "PONG");
    Ok(())
}
