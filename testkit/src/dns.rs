//! A DNS server of the test's own, on loopback: answers from a table the test fills, counts the
//! queries it gets, and can be told to fail or to go silent.
//!
//! The filter's DNS rules (blocklists, SPF, DKIM, DMARC) must never reach the internet from a test,
//! and their interesting cases are the ones a public server will not stage on demand: a listed IP,
//! a Spamhaus error code, a key published a second ago, a server that never answers. This server
//! speaks plain DNS over UDP and TCP on one loopback port (hickory-proto's message types do the
//! wire format), so the code under test uses its real resolver pointed at [`DnsServer::addr`].
//!
//! Answers: a name in the table with records of the asked type gets them (TTL [`TTL`]); a name in
//! the table without that type gets an empty `NOERROR` (NODATA); any other name `NXDOMAIN`. Both
//! negative answers carry an SOA whose minimum is [`TTL`], so resolvers cache them as real servers'
//! are cached. [`Mode::ServFail`] answers everything with `SERVFAIL`; [`Mode::Silent`] reads
//! queries and answers none (a timed-out server).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// TTL of every answer, positive or negative, in seconds.
pub const TTL: u32 = 300;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the table.
    Answer,
    /// `SERVFAIL` to everything.
    ServFail,
    /// Nothing at all: queries are read and dropped.
    Silent,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Vec<RData>>,
    /// Queries received, by lower-case name without the final dot.
    queries: HashMap<String, usize>,
    mode: Option<Mode>,
}

impl State {
    fn mode(&self) -> Mode {
        self.mode.unwrap_or(Mode::Answer)
    }
}

/// A running DNS server; stops on drop.
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _tasks: JoinSet<()>,
}

/// The table's key for `name`: lower case, no final dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// A server answering from an empty table, UDP and TCP on one free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_in(Mode::Answer).await
    }

    /// A server that never answers.
    pub async fn silent() -> anyhow::Result<Self> {
        Self::start_in(Mode::Silent).await
    }

    async fn start_in(mode: Mode) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            mode: Some(mode),
            ..State::default()
        }));
        // UDP and TCP on the same port: take a free UDP port and try its TCP twin; another
        // process may hold that one, so a few tries.
        let mut last = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => {
                    let mut tasks = JoinSet::new();
                    tasks.spawn(serve_udp(udp, state.clone()));
                    tasks.spawn(serve_tcp(tcp, state.clone()));
                    return Ok(Self {
                        addr,
                        state,
                        _tasks: tasks,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || anyhow::anyhow!("no free port"),
            |e| anyhow::Error::new(e).context("no UDP port with a free TCP twin"),
        ))
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ip:port`, as `MAILDROP_DNS_SERVERS` takes it.
    pub fn server_arg(&self) -> String {
        self.addr.to_string()
    }

    fn add(&self, name: &str, rdata: RData) {
        let mut state = self.state.lock().unwrap();
        state.records.entry(key(name)).or_default().push(rdata);
    }

    /// Adds an A record.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, RData::A(A(ip)));
    }

    /// Adds an AAAA record.
    pub fn add_aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.add(name, RData::AAAA(AAAA(ip)));
    }

    /// Adds a TXT record; text longer than 255 bytes is split into strings of 255, as DNS
    /// requires (readers join them).
    pub fn add_txt(&self, name: &str, text: &str) {
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
        self.add(name, RData::TXT(TXT::from_bytes(chunks)));
    }

    /// Removes every record of `name`.
    pub fn remove(&self, name: &str) {
        self.state.lock().unwrap().records.remove(&key(name));
    }

    /// Changes how the server answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Queries received for `name`, over UDP and TCP, of any type.
    pub fn queries_for(&self, name: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.queries.get(&key(name)).copied().unwrap_or(0)
    }

    /// Queries received in all.
    pub fn queries(&self) -> usize {
        self.state.lock().unwrap().queries.values().sum()
    }
}

/// The answer to one query message, or `None` to stay silent.
fn respond(state: &Mutex<State>, request: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut state = state.lock().unwrap();
    for q in &request.queries {
        *state.queries.entry(key(&q.name().to_ascii())).or_default() += 1;
    }
    let mode = state.mode();
    if mode == Mode::Silent {
        return None;
    }
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.add_queries(request.queries.iter().cloned());
    if mode == Mode::ServFail {
        response.metadata.response_code = ResponseCode::ServFail;
        return response.to_vec().ok();
    }
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    let name = query.name().clone();
    match state.records.get(&key(&name.to_ascii())) {
        None => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(soa(&name));
        }
        Some(records) => {
            let matching: Vec<Record> = records
                .iter()
                .filter(|r| r.record_type() == query.query_type())
                .map(|r| Record::from_rdata(name.clone(), TTL, r.clone()))
                .collect();
            if matching.is_empty() {
                response.add_authority(soa(&name));
            } else {
                response.add_answers(matching);
            }
        }
    }
    response.to_vec().ok()
}

/// The SOA of a negative answer, so that resolvers may cache it for [`TTL`].
fn soa(name: &Name) -> Record {
    let zone = name.base_name();
    let soa = SOA::new(
        Name::from_str("ns.test.").expect("a valid name"),
        Name::from_str("hostmaster.test.").expect("a valid name"),
        1,
        3600,
        600,
        86_400,
        TTL,
    );
    Record::from_rdata(zone, TTL, RData::SOA(soa))
}

async fn serve_udp(socket: UdpSocket, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(answer) = respond(&state, &buf[..n]) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(serve_connection(stream, state.clone()));
        // Reap finished connections so the set does not grow with the test.
        while connections.try_join_next().is_some() {}
    }
}

/// One TCP connection: two-byte length, message, as often as the client likes.
async fn serve_connection(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        let Some(answer) = respond(&state, &request) else {
            continue;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        if stream.write_all(&len.to_be_bytes()).await.is_err()
            || stream.write_all(&answer).await.is_err()
        {
            return;
        }
    }
}

/// The name a DNS blocklist is asked about `ip` under `zone`: reversed octets for IPv4, reversed
/// nibbles for IPv6 (`7.113.0.203.zen.example`). For tests that publish a listing.
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}")
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str(zone);
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(hickory_proto::op::Query::query(
            Name::from_str(name).unwrap(),
            rtype,
        ));
        m.to_vec().unwrap()
    }

    fn answer(state: &Mutex<State>, name: &str, rtype: RecordType) -> Message {
        Message::from_vec(&respond(state, &query(name, rtype)).unwrap()).unwrap()
    }

    #[test]
    fn answers_from_the_table_and_counts() {
        let state = Mutex::new(State::default());
        state.lock().unwrap().records.insert(
            "a.test".into(),
            vec![RData::A(A(Ipv4Addr::new(127, 0, 0, 2)))],
        );
        let m = answer(&state, "A.test.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        let m = answer(&state, "a.test.", RecordType::TXT);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty() && !m.authorities.is_empty());
        let m = answer(&state, "b.test.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let s = state.lock().unwrap();
        assert_eq!(s.queries["a.test"], 2);
        assert_eq!(s.queries["b.test"], 1);
    }

    #[test]
    fn failing_and_silent_modes() {
        let state = Mutex::new(State {
            mode: Some(Mode::ServFail),
            ..State::default()
        });
        let m = answer(&state, "a.test.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        state.lock().unwrap().mode = Some(Mode::Silent);
        assert!(respond(&state, &query("a.test.", RecordType::A)).is_none());
        assert_eq!(state.lock().unwrap().queries["a.test"], 2);
    }

    #[test]
    fn dnsbl_names_reverse_octets_and_nibbles() {
        assert_eq!(
            dnsbl_name("203.0.113.7".parse().unwrap(), "zen.test"),
            "7.113.0.203.zen.test"
        );
        let v6 = dnsbl_name("2001:db8::1".parse().unwrap(), "bl.test");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.bl.test"), "{v6}");
        assert_eq!(v6.split('.').count(), 32 + 2);
    }

    #[tokio::test]
    async fn serves_udp_and_tcp_on_one_port() {
        let server = DnsServer::start().await.unwrap();
        server.add_txt("t.test", &"x".repeat(300));
        let request = query("t.test.", RecordType::TXT);

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(&request, server.addr()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = udp.recv(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        let RData::TXT(txt) = &m.answers[0].data else {
            panic!("not TXT: {m:?}")
        };
        assert_eq!(txt.txt_data.iter().map(|c| c.len()).sum::<usize>(), 300);

        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(&(request.len() as u16).to_be_bytes())
            .await
            .unwrap();
        tcp.write_all(&request).await.unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut body).await.unwrap();
        assert_eq!(Message::from_vec(&body).unwrap().answers.len(), 1);
        assert_eq!(server.queries_for("T.test"), 2);
    }
}
