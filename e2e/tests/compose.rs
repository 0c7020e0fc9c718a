//! `compose.yaml`, the `Dockerfile` and `deploy/` checked without Docker (its engine is not
//! available where the tests run): the file parses, every service can start, every `MAILDROP_*`
//! variable is one the stage really reads and has a value its own parser takes, health checks ask
//! the port the stage serves `/readyz` on, every reference (depends_on, volumes, mounted files)
//! resolves, the image contains every binary the file runs, and the `cluster` profile is a real
//! 3-node cluster with replicated streams. The NATS configurations are checked by `nats-server -t`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use clap::CommandFactory;
use serde_norway::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e is in the workspace")
        .to_owned()
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root().join(path)).with_context(|| format!("reading {path}"))
}

/// compose.yaml with its anchors and `<<` merges resolved, as Docker Compose sees it.
fn compose() -> anyhow::Result<Value> {
    let mut value: Value = serde_norway::from_str(&read("compose.yaml")?)?;
    value.apply_merge()?;
    Ok(value)
}

fn services(compose: &Value) -> anyhow::Result<BTreeMap<String, Value>> {
    let map = compose["services"]
        .as_mapping()
        .context("`services` is a mapping")?;
    map.iter()
        .map(|(k, v)| Ok((k.as_str().context("a service name")?.to_owned(), v.clone())))
        .collect()
}

/// The clap command of the stage a binary runs.
fn stage_command(binary: &str) -> Option<clap::Command> {
    Some(match binary {
        "maildrop-ingest" => maildrop_ingest::Config::command(),
        "maildrop-filter" => maildrop_filter::Config::command(),
        "maildrop-store-writer" => maildrop_store_writer::Config::command(),
        "maildrop-gateway" => maildrop_gateway::Config::command(),
        "maildrop-reporter" => maildrop_reporter::Config::command(),
        _ => return None,
    })
}

/// The binary a service runs (`command[0]`), if it is one of ours.
fn binary(service: &Value) -> Option<String> {
    let first = match &service["command"] {
        Value::Sequence(s) => s.first()?.as_str()?.to_owned(),
        Value::String(s) => s.split_whitespace().next()?.to_owned(),
        _ => return None,
    };
    first.starts_with("maildrop-").then_some(first)
}

/// `${VAR:-default}` and `${VAR-default}` become the value from `vars`, else the default;
/// `${VAR}` needs a value in `vars`.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .with_context(|| format!("unclosed ${{ in {text:?}"))?;
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(":-").or_else(|| inner.split_once('-')) {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (vars.get(name), default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => bail!("{name} has no value and no default in {text:?}"),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A service's environment as a map (both the mapping and the `KEY=value` list forms).
fn environment(service: &Value) -> anyhow::Result<BTreeMap<String, String>> {
    let scalar = |v: &Value| -> anyhow::Result<String> {
        Ok(match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => bail!("not a scalar: {other:?}"),
        })
    };
    match &service["environment"] {
        Value::Null => Ok(BTreeMap::new()),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| Ok((scalar(k)?, scalar(v)?)))
            .collect(),
        Value::Sequence(s) => s
            .iter()
            .map(|item| {
                let item = scalar(item)?;
                let (k, v) = item.split_once('=').context("KEY=value")?;
                Ok((k.to_owned(), v.to_owned()))
            })
            .collect(),
        other => bail!("environment is neither a mapping nor a list: {other:?}"),
    }
}

/// `KEY=value` lines of an env file.
fn env_file(path: &str) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(read(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// Parses a stage's configuration from the service's `MAILDROP_*` environment, as the stage would
/// at start: every variable must be one of its arguments, and every value must pass its parser.
fn check_stage_environment(
    name: &str,
    binary: &str,
    env: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let command = stage_command(binary).with_context(|| format!("{name}: no stage {binary}"))?;
    let mut by_env = BTreeMap::new();
    for arg in command.get_arguments() {
        if let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) {
            by_env.insert(var.to_string_lossy().into_owned(), long.to_owned());
        }
    }
    let mut argv = vec![binary.to_owned()];
    for (key, value) in env {
        if !key.starts_with("MAILDROP_") {
            continue;
        }
        let long = by_env
            .get(key)
            .with_context(|| format!("{name}: {binary} has no setting {key}"))?;
        argv.push(format!("--{long}={}", interpolate(value, vars)?));
    }
    command
        .try_get_matches_from(&argv)
        .with_context(|| format!("{name}: {binary} refuses {argv:?}"))?;
    Ok(())
}

/// The port of `host:port`.
fn port_of(addr: &str) -> anyhow::Result<u16> {
    addr.rsplit_once(':')
        .context("host:port")?
        .1
        .parse()
        .with_context(|| format!("the port of {addr:?}"))
}

/// The URL a health check asks, from `["CMD", …, "http://…"]` or `CMD-SHELL`.
fn health_url(service: &Value) -> Option<String> {
    let test = &service["healthcheck"]["test"];
    let words: Vec<String> = match test {
        Value::Sequence(s) => s
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => return None,
    };
    words.into_iter().find(|w| w.starts_with("http://"))
}

#[test]
fn every_service_can_start_and_every_reference_resolves() -> anyhow::Result<()> {
    let compose = compose()?;
    let services = services(&compose)?;
    let volumes: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for (name, service) in &services {
        ensure!(
            service["image"].is_string() || !service["build"].is_null(),
            "{name}: neither image nor build"
        );
        ensure!(service["restart"].is_string(), "{name}: no restart policy");
        ensure!(
            !service["healthcheck"]["test"].is_null(),
            "{name}: no health check"
        );
        match &service["depends_on"] {
            Value::Null => {}
            Value::Sequence(s) => {
                for target in s {
                    let target = target.as_str().context("a service name")?;
                    ensure!(services.contains_key(target), "{name} depends on {target}");
                }
            }
            Value::Mapping(m) => {
                for target in m.keys() {
                    let target = target.as_str().context("a service name")?;
                    ensure!(services.contains_key(target), "{name} depends on {target}");
                }
            }
            other => bail!("{name}: depends_on is {other:?}"),
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let volume = volume.as_str().context("short volume syntax")?;
            let source = volume.split(':').next().unwrap_or_default();
            if source.starts_with('.') || source.starts_with('/') {
                ensure!(
                    root().join(source).exists(),
                    "{name}: mounts {source}, which does not exist"
                );
            } else {
                ensure!(
                    volumes.contains(source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn stage_settings_are_real_and_health_checks_ask_the_ops_port() -> anyhow::Result<()> {
    let compose = compose()?;
    let services = services(&compose)?;
    let single = BTreeMap::new();
    let cluster = env_file("deploy/cluster.env")?;
    let mut stages = BTreeSet::new();
    for (name, service) in &services {
        let Some(binary) = binary(service) else {
            continue;
        };
        stages.insert(binary.clone());
        let env = environment(service)?;
        for vars in [&single, &cluster] {
            check_stage_environment(name, &binary, &env, vars)?;
        }
        // The gateway serves /readyz on its HTTP port, the others on their ops port.
        let key = if binary == "maildrop-gateway" {
            "MAILDROP_HTTP_ADDR"
        } else {
            "MAILDROP_OPS_ADDR"
        };
        let addr = env
            .get(key)
            .with_context(|| format!("{name}: no {key}, so nothing to probe"))?;
        ensure!(
            addr.starts_with("0.0.0.0:"),
            "{name}: {key}={addr} is not reachable from outside the container"
        );
        let url = health_url(service).with_context(|| format!("{name}: no probe URL"))?;
        let probed = url
            .strip_prefix("http://")
            .and_then(|u| u.split_once('/'))
            .with_context(|| format!("{name}: {url}"))?;
        ensure!(
            port_of(probed.0)? == port_of(addr)?,
            "{name}: the health check asks {url}, the stage listens on {addr}"
        );
        ensure!(probed.1 == "readyz", "{name}: the health check asks {url}");
    }
    let expected: BTreeSet<String> = [
        "maildrop-ingest",
        "maildrop-filter",
        "maildrop-store-writer",
        "maildrop-gateway",
        "maildrop-reporter",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(stages, expected, "every stage runs, from one image");
    for (name, service) in &services {
        if binary(service).is_some() {
            assert_eq!(service["image"], "maildrop:latest", "{name}");
        }
    }
    Ok(())
}

#[test]
fn the_consumers_scale_out_and_the_cluster_profile_is_a_cluster() -> anyhow::Result<()> {
    let compose = compose()?;
    let services = services(&compose)?;
    for name in ["filter", "store-writer"] {
        let service = &services[name];
        let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1);
        ensure!(replicas >= 2, "{name}: {replicas} replica");
        ensure!(
            service["ports"].is_null(),
            "{name}: replicas cannot share published ports"
        );
    }
    let nodes: Vec<&String> = services
        .iter()
        .filter(|(_, s)| {
            s["profiles"]
                .as_sequence()
                .is_some_and(|p| p.iter().any(|v| v == "cluster"))
        })
        .map(|(n, _)| n)
        .collect();
    assert_eq!(nodes, ["nats-1", "nats-2", "nats-3"]);

    let cluster = env_file("deploy/cluster.env")?;
    assert_eq!(cluster["COMPOSE_PROFILES"], "cluster");
    assert_eq!(cluster["MAILDROP_STREAM_REPLICAS"], "3");
    let urls: Vec<&str> = cluster["MAILDROP_NATS_URL"].split(',').collect();
    assert_eq!(
        urls,
        [
            "nats://nats-1:4222",
            "nats://nats-2:4222",
            "nats://nats-3:4222"
        ]
    );
    let conf = read("deploy/nats-cluster.conf")?;
    for node in &nodes {
        assert!(
            conf.contains(&format!("nats-route://{node}:6222")),
            "no route to {node}"
        );
        assert!(
            services[node.as_str()]["command"]
                .as_sequence()
                .is_some_and(|c| c.iter().any(|w| w == node.as_str())),
            "{node} is not named {node}"
        );
    }
    // Every stage follows the variables the env file sets.
    for (name, service) in &services {
        if binary(service).is_some() {
            let env = environment(service)?;
            for key in ["MAILDROP_NATS_URL", "MAILDROP_STREAM_REPLICAS"] {
                ensure!(
                    env.get(key)
                        .is_some_and(|v| v.contains(&format!("${{{key}"))),
                    "{name}: {key} does not follow deploy/cluster.env"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn the_image_holds_every_binary_compose_runs() -> anyhow::Result<()> {
    let dockerfile = read("Dockerfile")?;
    let copied: BTreeSet<&str> = dockerfile
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .collect();
    let built: BTreeSet<&str> = dockerfile
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "-p")
        .map(|w| w[1])
        .collect();
    let services = services(&compose()?)?;
    for (name, service) in &services {
        let Some(binary) = binary(service) else {
            continue;
        };
        ensure!(
            copied.contains(binary.as_str()),
            "{name} runs {binary}, which the Dockerfile does not copy into the image"
        );
        // The binary is declared by the crate the Dockerfile builds.
        let dir = binary.trim_start_matches("maildrop-");
        let manifest = read(&format!("{dir}/Cargo.toml"))?;
        ensure!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{dir}/Cargo.toml declares no binary {binary}"
        );
        ensure!(
            built.contains(binary.as_str()),
            "the Dockerfile does not build the package {binary}"
        );
    }
    assert!(
        dockerfile.contains("curl"),
        "the probe of the health checks"
    );
    Ok(())
}

#[test]
fn the_nats_configurations_are_valid() -> anyhow::Result<()> {
    for conf in ["deploy/nats.conf", "deploy/nats-cluster.conf"] {
        let out = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(root().join(conf))
            .arg("-t")
            .output()
            .context("running nats-server -t (is nats-server installed? `make deps`)")?;
        ensure!(
            out.status.success(),
            "{conf}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn interpolation_follows_compose() -> anyhow::Result<()> {
    let vars: BTreeMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
    assert_eq!(interpolate("${A:-y}/${B:-z}", &vars)?, "x/z");
    assert_eq!(interpolate("plain", &vars)?, "plain");
    assert!(interpolate("${B}", &vars).is_err());
    Ok(())
}
