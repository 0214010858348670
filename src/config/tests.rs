//! Settings resolved from flags, files and defaults; bad values named.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::storage::FlushPolicy;

/// A file descriptor limit as on a typical server (the kernel's default fs.nr_open).
const NOFILE: u64 = 1 << 20;

#[test]
fn the_open_file_budget_and_partition_limit_follow_the_descriptor_limit() {
    // (1 Mi - 4096 connections - 256 - 2 * 64) / 2 shards.
    let config = ServeArgs::default().resolve(vec![0, 1], NOFILE).unwrap();
    assert_eq!(
        config.open_files_max,
        (NOFILE as usize - 4096 - 256 - 128) / 2
    );
    assert_eq!(config.partitions_max, config.open_files_max);
    // The common soft limit of 1024 cannot even hold the default connections.
    match ServeArgs::default().resolve(vec![0, 1], 1024) {
        Err(error @ ConfigError::FileDescriptors { .. }) => {
            let message = error.to_string();
            assert!(message.contains("ulimit -n") && message.contains("LimitNOFILE"));
        }
        other => panic!("expected a descriptor error, got {other:?}"),
    }
    let fewer_connections = ServeArgs {
        connections_max: Some(100),
        ..Default::default()
    };
    let config = fewer_connections.clone().resolve(vec![0, 1], 1024).unwrap();
    assert_eq!(config.open_files_max, (1024 - 100 - 256 - 128) / 2);
    // An explicit budget must fit the limit, and be usable.
    let explicit = |open_files_max, partitions_max| ServeArgs {
        open_files_max: Some(open_files_max),
        partitions_max,
        ..fewer_connections.clone()
    };
    assert_eq!(
        explicit(8, None)
            .resolve(vec![0, 1], 1024)
            .unwrap()
            .partitions_max,
        8
    );
    assert!(matches!(
        explicit(271, None).resolve(vec![0, 1], 1024),
        Err(ConfigError::FileDescriptors { .. })
    ));
    assert!(matches!(
        explicit(7, None).resolve(vec![0, 1], 1024),
        Err(ConfigError::Invalid {
            name: "open-files-max",
            ..
        })
    ));
    // The partition limit may use the whole budget, not more.
    let config = explicit(100, Some(200)).resolve(vec![0, 1], 1024).unwrap();
    assert_eq!(config.partitions_max, 200);
    for partitions_max in [0, 201] {
        assert!(matches!(
            explicit(100, Some(partitions_max)).resolve(vec![0, 1], 1024),
            Err(ConfigError::Invalid {
                name: "partitions-max",
                ..
            })
        ));
    }
}

#[test]
fn defaults_resolve_and_bad_values_are_named() {
    let config = ServeArgs::default()
        .resolve(vec![0, 1], NOFILE)
        .expect("defaults");
    let listener = &config.listeners.all[0];
    assert_eq!(listener.name, "PLAINTEXT");
    assert_eq!(listener.bind.to_string(), "127.0.0.1:9092");
    assert_eq!(listener.advertised, ("127.0.0.1".to_string(), 9092));
    assert_eq!(config.shards, 2);
    assert_eq!(
        config.data_dir,
        std::env::current_dir().unwrap().join("petrel-data")
    );
    assert_eq!(config.flush, FlushPolicy::EveryAppend);
    assert_eq!(config.fetch_bytes_max, 57_671_680);
    assert_eq!(
        config.group_limits.offsets_retention,
        Duration::from_secs(7 * 24 * 3600)
    );
    assert_eq!(
        config.group_limits.offsets_retention_check_interval,
        Duration::from_secs(600)
    );
    let cases: Vec<(ServeArgs, &str)> = vec![
        (
            ServeArgs {
                listen: Some("nowhere".into()),
                ..Default::default()
            },
            "listen",
        ),
        (
            ServeArgs {
                shards: Some(0),
                ..Default::default()
            },
            "shards",
        ),
        (
            ServeArgs {
                default_partitions: Some(0),
                ..Default::default()
            },
            "default-partitions",
        ),
        (
            ServeArgs {
                flush_interval_ms: Some(0),
                ..Default::default()
            },
            "flush-interval-ms",
        ),
        (
            ServeArgs {
                segment_bytes: Some(10),
                ..Default::default()
            },
            "segment.bytes",
        ),
        (
            ServeArgs {
                batch_decompressed_bytes_max: Some(100),
                ..Default::default()
            },
            "batch-decompressed-bytes-max",
        ),
        (
            ServeArgs {
                advertised_listener: Some("host".into()),
                ..Default::default()
            },
            "advertised-listener",
        ),
        (
            ServeArgs {
                fetch_max_bytes: Some(1023),
                ..Default::default()
            },
            "fetch-max-bytes",
        ),
        (
            ServeArgs {
                fetch_max_bytes: Some((1 << 30) + 1),
                ..Default::default()
            },
            "fetch-max-bytes",
        ),
        (
            ServeArgs {
                offsets_retention_minutes: Some(0),
                ..Default::default()
            },
            "offsets-retention-minutes",
        ),
        (
            ServeArgs {
                offsets_retention_check_interval_ms: Some(0),
                ..Default::default()
            },
            "offsets-retention-check-interval-ms",
        ),
    ];
    for (args, name) in cases {
        match args.resolve(vec![0], NOFILE) {
            Err(ConfigError::Invalid { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{name}: expected an error, got {other:?}"),
        }
    }
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("petrel.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:19092\"\nshards = 1\ndata-dir = \"/tmp/x\"\nbatch-decompressed-bytes-max = 2048\n",
    )
    .unwrap();
    let args = ServeArgs {
        config: Some(path.clone()),
        shards: Some(2),
        ..Default::default()
    };
    let config = args
        .merge_file()
        .unwrap()
        .resolve(vec![0, 1], NOFILE)
        .unwrap();
    assert_eq!(config.listeners.all[0].bind.port(), 19092);
    assert_eq!(config.shards, 2);
    assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(config.batch_decompressed_bytes_max, 2048);
    std::fs::write(&path, "no-such-setting = 1\n").unwrap();
    let args = ServeArgs {
        config: Some(path),
        ..Default::default()
    };
    assert!(matches!(
        args.merge_file(),
        Err(ConfigError::ParseFile { .. })
    ));
}

fn listeners(text: &str) -> ServeArgs {
    ServeArgs {
        listeners: Some(text.into()),
        ..Default::default()
    }
}

#[test]
fn listeners_are_named_mapped_and_advertised_kafka_style() {
    let args = ServeArgs {
        advertised_listeners: Some("EXTERNAL://broker.example:19093".into()),
        listener_security_protocol_map: Some("internal:PLAINTEXT,EXTERNAL:PLAINTEXT".into()),
        inter_broker_listener_name: Some("INTERNAL".into()),
        ..listeners("PLAINTEXT://127.0.0.1:9092,internal://:9094,EXTERNAL://127.0.0.1:0")
    };
    let config = args.resolve(vec![0], NOFILE).expect("listeners");
    let all = &config.listeners.all;
    let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["PLAINTEXT", "INTERNAL", "EXTERNAL"]);
    assert!(all
        .iter()
        .all(|l| l.protocol == SecurityProtocol::Plaintext));
    assert_eq!(
        all[1].bind.to_string(),
        "0.0.0.0:9094",
        "an empty host binds all"
    );
    assert_eq!(all[2].advertised, ("broker.example".to_string(), 19093));
    assert_eq!(config.inter_broker_listener().name, "INTERNAL");
    assert_eq!(config.endpoints()[0].port, 9092);
}

#[test]
fn bad_listener_settings_are_named() {
    let ssl = |extra: ServeArgs| ServeArgs {
        listeners: Some("SSL://127.0.0.1:0".into()),
        ..extra
    };
    let cases = [
        (
            listeners("PLAINTEXT//127.0.0.1:9092"),
            "listeners",
            "NAME://",
        ),
        (
            listeners("PLAINTEXT://127.0.0.1:x"),
            "listeners",
            "not a number",
        ),
        (
            listeners("SSL://127.0.0.1:1,SSL://127.0.0.1:2"),
            "listeners",
            "twice",
        ),
        (
            listeners("PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1"),
            "listeners",
            "port 1",
        ),
        (
            listeners("CLIENT://127.0.0.1:1"),
            "listeners",
            "not a security protocol",
        ),
        (
            ServeArgs {
                listen: Some("127.0.0.1:1".into()),
                ..listeners("PLAINTEXT://127.0.0.1:2")
            },
            "listeners",
            "either",
        ),
        (
            ServeArgs {
                advertised_listeners: Some("SSL://h:1".into()),
                ..listeners("PLAINTEXT://127.0.0.1:2")
            },
            "advertised-listeners",
            "no listener SSL",
        ),
        (
            ServeArgs {
                inter_broker_listener_name: Some("SSL".into()),
                ..Default::default()
            },
            "inter-broker-listener-name",
            "no listener",
        ),
        (
            ServeArgs {
                ssl_key_location: Some("/k.pem".into()),
                ..Default::default()
            },
            "ssl-certificate-location",
            "no listener (nor the controller links) is SSL",
        ),
        (
            ssl(ServeArgs::default()),
            "ssl-certificate-location",
            "needs it",
        ),
        (
            ssl(ServeArgs {
                ssl_certificate_location: Some("/nonexistent/c.pem".into()),
                ssl_key_location: Some("/nonexistent/k.pem".into()),
                ..Default::default()
            }),
            "ssl-certificate-location",
            "cannot read",
        ),
        (
            ssl(ServeArgs {
                ssl_certificate_location: Some("/c.pem".into()),
                ssl_key_location: Some("/k.pem".into()),
                ssl_client_auth: Some("always".into()),
                ..Default::default()
            }),
            "ssl-client-auth",
            "required",
        ),
        (
            ServeArgs {
                controller_quorum_voters: Some("1@127.0.0.1:9093".into()),
                node_id: Some(1),
                ssl_certificate_location: Some("/c.pem".into()),
                ssl_key_location: Some("/k.pem".into()),
                ..listeners("SASL_SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0")
            },
            "inter-broker-listener-name",
            "PLAINTEXT or SSL",
        ),
        (
            ServeArgs {
                controller_quorum_voters: Some("1@127.0.0.1:9093".into()),
                node_id: Some(1),
                ssl_certificate_location: Some("/c.pem".into()),
                ssl_key_location: Some("/k.pem".into()),
                ..listeners("SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0")
            },
            "inter-broker-listener-name",
            "ssl-truststore-location",
        ),
        (
            ServeArgs {
                controller_quorum_voters: Some("1@127.0.0.1:9093".into()),
                node_id: Some(1),
                controller_security_protocol: Some("SSL".into()),
                ssl_certificate_location: Some("/c.pem".into()),
                ssl_key_location: Some("/k.pem".into()),
                ..Default::default()
            },
            "controller-security-protocol",
            "ssl-truststore-location",
        ),
        (
            ServeArgs {
                controller_security_protocol: Some("SSL".into()),
                ..Default::default()
            },
            "controller-security-protocol",
            "needs --controller-quorum-voters",
        ),
        (
            ServeArgs {
                controller_security_protocol: Some("TLS".into()),
                ..Default::default()
            },
            "controller-security-protocol",
            "PLAINTEXT or SSL",
        ),
    ];
    for (args, setting, reason) in cases {
        match args.resolve(vec![0], NOFILE) {
            Err(ConfigError::Invalid {
                name, reason: why, ..
            }) => {
                assert_eq!(name, setting, "{why}");
                assert!(
                    why.contains(reason),
                    "{setting}: {why:?} should say {reason:?}"
                );
            }
            other => panic!("{setting} ({reason}): expected an error, got {other:?}"),
        }
    }
}
