//! The `petrel` command line.
#![deny(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use petrel::record_batch;
use petrel::runtime;
use petrel::storage::log::check_segments;
use petrel::storage::{
    FlushPolicy, Log, LogConfig, ShardStorage, ShardStorageConfig, StorageError,
};
use petrel::testkit;

#[derive(Parser)]
#[command(
    name = "petrel",
    version,
    about = "A Kafka-compatible streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. With no flags: 127.0.0.1:9092, ./petrel-data, one shard per CPU.
    Serve(Box<Serve>),
    /// Make a data directory a node of a cluster (Kafka's `kafka-storage format`): writes
    /// `<data dir>/meta.properties`. Every node of a cluster is formatted with the same
    /// cluster id before its first start with `--controller-quorum-voters`. With
    /// --add-scram (also without a cluster id, for a single broker's new data directory):
    /// users that exist from the first start, before anyone could create them.
    Format {
        #[arg(long)]
        data_dir: PathBuf,
        /// The cluster's id: 1 to 64 of [A-Za-z0-9_-], the same on every node.
        #[arg(long, requires = "node_id")]
        cluster_id: Option<String>,
        /// This node's id (1 or more), as in --controller-quorum-voters.
        #[arg(long, requires = "cluster_id")]
        node_id: Option<i32>,
        /// A bootstrap user, as Kafka's: `SCRAM-SHA-512=[name=admin,password=admin-secret]`
        /// (also `iterations=N`); repeat for more. The password is salted here; only the
        /// salted credential is kept (`bootstrap-users.json`, mode 0600).
        #[arg(long = "add-scram")]
        add_scram: Vec<String>,
    },
    /// Run a cluster on this machine for development: formats (once) and starts `--nodes`
    /// brokers, every one a voter of the metadata quorum, on consecutive ports from
    /// `--base-port` (quorum ports from base-port + 100), and stops them all on Ctrl-C.
    DevCluster {
        #[arg(long, default_value_t = 3)]
        nodes: i32,
        #[arg(long, default_value = "petrel-dev-cluster")]
        dir: PathBuf,
        #[arg(long, default_value_t = 9092)]
        base_port: u16,
        /// Shards of each node (they share this machine's CPUs).
        #[arg(long, default_value_t = 1)]
        shards: usize,
    },
    /// Make a test CA and certificates for SSL listeners and mTLS clients (PEM files in
    /// --dir: ca.pem, server.pem and server-key.pem, client-NAME.pem and
    /// client-NAME-key.pem). server.pem (CN=petrel) is also every node's identity on links
    /// between nodes. For development and tests: use your own CA in production.
    DevCerts {
        #[arg(long, default_value = "petrel-certs")]
        dir: PathBuf,
        /// Names and addresses the server certificate is valid for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
        /// A client certificate (CN=NAME) for each name.
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
    },
    /// Inspect partition logs on disk.
    #[command(subcommand)]
    Log(LogCommand),
    /// Run the deterministic simulation of the control plane: each seed is a cluster's
    /// life under crashes, pauses, partitions and a lossy network, checked after every
    /// step. Exits 1 with the first failing seed (replay it with --seed N --trace).
    Simulate {
        /// Replay this one seed.
        #[arg(long)]
        seed: Option<u64>,
        /// How many seeds, from --from.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Threads (default: the CPUs this process may use).
        #[arg(long)]
        threads: Option<usize>,
        /// Nodes per run (default: 3 or 5, as each seed picks).
        #[arg(long)]
        nodes: Option<usize>,
        /// Simulated seconds of faults, then of healing.
        #[arg(long, default_value_t = 30)]
        fault_seconds: u64,
        #[arg(long, default_value_t = 30)]
        heal_seconds: u64,
        /// Print every event of the run (with --seed).
        #[arg(long)]
        trace: bool,
    },
}

#[derive(clap::Args)]
struct Serve {
    #[command(flatten)]
    settings: petrel::config::ServeArgs,
    /// Test hook: make this shard panic (tests/broker_startup.rs checks that the whole
    /// process then exits, naming the thread).
    #[arg(long, hide = true)]
    inject_panic_shard: Option<usize>,
    /// Test hook: how long after the shard listens it panics; 0: while it starts.
    #[arg(long, hide = true, default_value_t = 0)]
    inject_panic_after_ms: u64,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Recover a partition directory (as the broker would on start), check every batch (CRC
    /// and every record, as produce does) and print a summary of its segments. Exits 1 if
    /// any batch is invalid, after naming each.
    Dump {
        /// A partition directory, such as `petrel-data/orders-0`.
        dir: PathBuf,
        /// Also print one line per batch.
        #[arg(long)]
        batches: bool,
    },
    /// Crash-test writer: appends numbered batches from concurrent tasks and prints
    /// `ACK <sequence> <base offset>` once each is durable. Used by tests/storage_crash.rs.
    #[command(hide = true)]
    CrashWriter {
        #[arg(long)]
        dir: PathBuf,
        /// Sequence number of the first batch this run writes.
        #[arg(long)]
        first_sequence: u64,
        #[arg(long, default_value_t = 4)]
        tasks: u64,
        #[arg(long, default_value_t = 256 * 1024)]
        segment_bytes_max: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A simulation's nodes log what real ones would (elections, fencing): thousands of
    // seeds of it say nothing; PETREL_LOG turns it on.
    let quiet = matches!(cli.command, Command::Simulate { .. });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PETREL_LOG")
                .unwrap_or_else(|_| if quiet { "off" } else { "warn" }.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::DevCerts {
            dir,
            hosts,
            clients,
        } => dev_certs(&dir, hosts, &clients),
        Command::Format {
            data_dir,
            cluster_id,
            node_id,
            add_scram,
        } => format(&data_dir, cluster_id.zip(node_id), &add_scram),
        Command::DevCluster {
            nodes,
            dir,
            base_port,
            shards,
        } => dev_cluster(nodes, dir, base_port, shards),
        Command::Log(LogCommand::Dump { dir, batches }) => dump(dir, batches),
        Command::Simulate {
            seed,
            seeds,
            from,
            threads,
            nodes,
            fault_seconds,
            heal_seconds,
            trace,
        } => {
            let options = petrel::simulation::Options {
                nodes,
                fault_time: Duration::from_secs(fault_seconds),
                heal_time: Duration::from_secs(heal_seconds),
                trace,
            };
            simulate(seed, from..from.saturating_add(seeds), threads, &options)
        }
        Command::Log(LogCommand::CrashWriter {
            dir,
            first_sequence,
            tasks,
            segment_bytes_max,
        }) => crash_writer(dir, first_sequence, tasks, segment_bytes_max),
    }
}

fn simulate(
    seed: Option<u64>,
    seeds: std::ops::Range<u64>,
    threads: Option<usize>,
    options: &petrel::simulation::Options,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if let Some(seed) = seed {
        return match petrel::simulation::run(seed, options) {
            Ok(report) => {
                println!("{report:#?}");
                Ok(())
            }
            Err(failure) => {
                eprintln!("{failure}");
                std::process::exit(1);
            }
        };
    }
    let threads = threads.unwrap_or_else(|| runtime::executor::allowed_cpus().len());
    match petrel::simulation::sweep(seeds, threads, options) {
        Ok(summary) => {
            println!("simulation: {summary}, in {:.1?}", started.elapsed());
            Ok(())
        }
        Err(failure) => {
            eprintln!("simulation: {failure}");
            std::process::exit(1);
        }
    }
}

fn serve(args: Serve) -> anyhow::Result<()> {
    let injected_panic = args
        .inject_panic_shard
        .map(|shard| petrel::broker::InjectedPanic {
            shard,
            after: Duration::from_millis(args.inject_panic_after_ms),
        });
    let config = args.settings.merge_file()?.resolve(
        runtime::executor::allowed_cpus(),
        petrel::config::raise_fd_limit()?,
    )?;
    // Registered before the shards start, so a signal during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    let tls_configs = config.tls_configs();
    let shards = config.shards;
    let data_dir = config.data_dir.clone();
    let broker = petrel::broker::start(config, injected_panic)?;
    // Tests and scripts wait for this line, and read the first listener's address from it
    // (and the others' from its end).
    let listeners: Vec<String> = broker
        .listeners
        .iter()
        .map(|(name, address)| format!("{name}://{address}"))
        .collect();
    println!(
        "petrel listening on {} with {shards} shards, data in {}, listeners {}",
        broker.listen,
        data_dir.display(),
        listeners.join(",")
    );
    std::io::stdout().flush()?;
    for signal in signals.forever() {
        if signal == signal_hook::consts::SIGHUP {
            reload_tls(&tls_configs);
            continue;
        }
        tracing::info!(signal, "shutting down");
        break;
    }
    broker.stop();
    // Not println!: it panics when stdout cannot be written (a full disk under a redirected
    // log), turning a clean stop into exit 101.
    let _ = writeln!(std::io::stdout(), "petrel stopped");
    Ok(())
}

/// SIGHUP: every TLS configuration reads its files again; new handshakes use them, open
/// connections keep their sessions, and one that fails keeps what it had.
fn reload_tls(configs: &[petrel::runtime::tls::AnyTls]) {
    if configs.is_empty() {
        tracing::info!("SIGHUP: no TLS configuration to reload");
    }
    for config in configs {
        let certificate = config.files().certificate.display();
        match config.reload() {
            Ok(()) => tracing::info!(%certificate, "TLS certificates reloaded"),
            Err(error) => tracing::error!(
                %certificate, %error,
                "TLS reload failed; the certificates in use stay"
            ),
        }
    }
}

/// Writes a CA, a server certificate for `hosts` and client certificates, all signed by
/// the CA (ECDSA P-256, valid until far in the future: for tests and development).
/// `petrel format`: a cluster node's identity, and bootstrap users.
fn format(
    data_dir: &std::path::Path,
    node: Option<(String, i32)>,
    add_scram: &[String],
) -> anyhow::Result<()> {
    let users = add_scram
        .iter()
        .map(|spec| petrel::broker::users::parse_add_scram(spec))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    match &node {
        Some((cluster_id, node_id)) => {
            let written = petrel::broker::identity::format(data_dir, cluster_id, *node_id)?;
            if !written && !users.is_empty() {
                anyhow::bail!(
                    "{} is already formatted: --add-scram is for a new node (set users with \
                     kafka-configs --alter --entity-type users)",
                    data_dir.display()
                );
            }
            let state = if written {
                "formatted"
            } else {
                "already formatted"
            };
            println!(
                "{}: {state} as node {node_id} of cluster {cluster_id}",
                data_dir.display()
            );
        }
        None if users.is_empty() => anyhow::bail!(
            "give --cluster-id and --node-id (a cluster node), or --add-scram (bootstrap \
             users of a single broker)"
        ),
        None => {}
    }
    if !users.is_empty() {
        petrel::broker::users::write(data_dir, &users)?;
        let names: Vec<&str> = users.iter().map(|u| u.user.as_str()).collect();
        println!(
            "{}: bootstrap users {} (applied at the first start)",
            data_dir.display(),
            names.join(", ")
        );
    }
    Ok(())
}

fn dev_certs(dir: &std::path::Path, hosts: Vec<String>, clients: &[String]) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    anyhow::ensure!(
        !dir.join("ca.pem").exists(),
        "{} already holds a CA (ca.pem); choose another --dir",
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Petrel development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    write("ca.pem", &ca.pem())?;
    write("ca-key.pem", &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca_params, ca_key);
    // The server certificate is also a node's identity on links to other nodes (quorum
    // links and replica fetches over mTLS), where it is the client: both usages.
    let mut leaves = vec![(
        "server".to_string(),
        hosts,
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )];
    for client in clients {
        leaves.push((
            format!("client-{client}"),
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ));
    }
    for (name, names, usages) in leaves {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        let common_name = name.strip_prefix("client-").unwrap_or("petrel");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = usages;
        let certificate = params.signed_by(&key, &issuer)?;
        write(&format!("{name}.pem"), &certificate.pem())?;
        write(&format!("{name}-key.pem"), &key.serialize_pem())?;
    }
    println!("certificates written to {}", dir.display());
    Ok(())
}

fn dev_cluster(nodes: i32, dir: PathBuf, base_port: u16, shards: usize) -> anyhow::Result<()> {
    use std::io::BufRead;
    anyhow::ensure!((1..=9).contains(&nodes), "--nodes must be 1 to 9");
    let port = |offset: i32| -> anyhow::Result<u16> {
        u16::try_from(i32::from(base_port) + offset).context("ports beyond 65535")
    };
    let mut voters = Vec::new();
    for id in 1..=nodes {
        voters.push(format!("{id}@127.0.0.1:{}", port(100 + id - 1)?));
    }
    let voters = voters.join(",");
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let exe = std::env::current_exe().context("finding the petrel binary")?;
    let mut children = Vec::new();
    for id in 1..=nodes {
        let data_dir = dir.join(format!("node-{id}"));
        petrel::broker::identity::format(&data_dir, "petrel-dev-cluster", id)?;
        let child = std::process::Command::new(&exe)
            .arg("serve")
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", port(id - 1)?)])
            .args(["--shards", &shards.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--controller-quorum-voters", &voters])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        children.push(child);
    }
    // Every node answers once the quorum has elected a leader and registered it.
    for (index, child) in children.iter_mut().enumerate() {
        let stdout = child.stdout.take().context("node stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(line)) => println!("node {}: {line}", index + 1),
            _ => anyhow::bail!("node {} did not start (its errors are above)", index + 1),
        }
        std::thread::spawn(move || for _ in lines {});
    }
    let bootstrap: Vec<String> = (0..nodes)
        .map(|offset| port(offset).map(|p| format!("127.0.0.1:{p}")))
        .collect::<anyhow::Result<_>>()?;
    println!("bootstrap servers: {}", bootstrap.join(","));
    std::io::stdout().flush()?;
    let _ = signals.forever().next();
    for child in &children {
        // Each node stops gracefully (and is fenced first).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for mut child in children {
        let _ = child.wait();
    }
    let _ = writeln!(std::io::stdout(), "petrel dev cluster stopped");
    Ok(())
}

fn dump(dir: PathBuf, print_batches: bool) -> anyhow::Result<()> {
    // Opening a log recovers it (a torn tail is cut, the checkpoint rewritten): never under a
    // running broker. Inside a data directory, take its lock as a broker would.
    let _data_dir_lock = match dir.parent() {
        Some(data_dir) if data_dir.join(petrel::broker::LOCK_FILE).exists() => {
            Some(petrel::broker::lock_data_dir(data_dir).context(
                "`petrel log dump` recovers the log it reads, so it needs the broker stopped \
                 (or a copy of the partition directory)",
            )?)
        }
        _ => None,
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let probe_dir = dir.clone();
    runtime::run_single("petrel-dump", probe_dir, move || async move {
        let shard = ShardStorage::new(&ShardStorageConfig::default());
        let log = match Log::open(shard.clone(), dir.clone(), name, LogConfig::default()).await {
            Ok(log) => log,
            Err(error @ StorageError::CorruptSealed { .. }) => {
                // The log does not open; show what each segment holds, changing nothing.
                println!("{error}");
                show_segments(&shard, &dir).await?;
                anyhow::bail!(
                    "{} does not open: a segment before the last is damaged",
                    dir.display()
                );
            }
            Err(error) => return Err(error.into()),
        };
        println!(
            "log start {}  log end {}  segments {:?}  bytes {}",
            log.log_start_offset(),
            log.next_offset(),
            log.segment_bases(),
            log.size_bytes()
        );
        let (count, invalid) = check_batches(&log, print_batches).await?;
        log.close().await?;
        if invalid > 0 {
            println!("{count} batches, {invalid} INVALID");
            anyhow::bail!("{invalid} of {count} batches are invalid");
        }
        println!("{count} batches, every one valid (CRC-32C and records)");
        Ok::<(), anyhow::Error>(())
    })?
}

/// What each segment of a log that does not open holds, checked without changing anything.
async fn show_segments(shard: &Rc<ShardStorage>, dir: &std::path::Path) -> anyhow::Result<()> {
    println!("segments, checked without changing anything:");
    for check in check_segments(shard, dir, &LogConfig::default()).await? {
        let state = match &check.invalid {
            None => "valid".to_string(),
            Some((position, reason)) => format!("INVALID from byte {position}: {reason}"),
        };
        println!(
            "{}  offsets {}..{}  bytes {} of {}  {state}",
            check.path.display(),
            check.base_offset,
            check.next_offset,
            check.valid_bytes,
            check.file_bytes,
        );
    }
    Ok(())
}

/// Walks every batch of `log` with produce's checks; prints the invalid ones (every one
/// with `print_batches`). Returns (batches, invalid batches).
async fn check_batches(log: &Log, print_batches: bool) -> anyhow::Result<(u64, u64)> {
    let limits = log.config().record_limits();
    let mut offset = log.log_start_offset();
    let (mut count, mut invalid) = (0u64, 0u64);
    while offset < log.next_offset() {
        let read = log.read(offset, 1 << 20, i64::MAX, true).await?;
        if read.batches.is_empty() {
            break;
        }
        for batch in &read.batches {
            let header = record_batch::RecordBatchHeader::parse(batch)?;
            // The same bounded walk as produce's check: a batch stored by an older version
            // that no longer validates is named, not trusted.
            let verdict = record_batch::validate(batch, batch.len(), limits).err();
            if print_batches || verdict.is_some() {
                println!(
                    "offset {}..={}  bytes {}  records {}  codec {}  max_ts {}{}",
                    header.base_offset.get(),
                    header.last_offset().unwrap_or(-1),
                    batch.len(),
                    header.records_count.get(),
                    header.compression(),
                    header.max_timestamp.get(),
                    verdict
                        .as_ref()
                        .map_or(String::new(), |error| format!("  INVALID: {error}"))
                );
            }
            invalid += u64::from(verdict.is_some());
            count += 1;
        }
        offset = read.next_offset;
    }
    Ok((count, invalid))
}

fn crash_writer(
    dir: PathBuf,
    first_sequence: u64,
    tasks: u64,
    segment_bytes_max: u64,
) -> anyhow::Result<()> {
    let probe_dir = dir.clone();
    runtime::run_single("petrel-crash-writer", probe_dir, move || async move {
        let config = LogConfig {
            segment_bytes_max,
            batch_bytes_max: 64 * 1024,
            flush: FlushPolicy::EveryAppend,
            preallocate_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let shard = ShardStorage::new(&ShardStorageConfig::default());
        let log = Log::open(shard, dir, "crash-0".into(), config)
            .await
            .context("open log")?;
        println!("READY {}", log.next_offset());
        std::io::stdout().flush()?;
        let next_sequence = Rc::new(std::cell::Cell::new(first_sequence));
        let mut writers = Vec::new();
        for _ in 0..tasks {
            let log = log.clone();
            let next_sequence = next_sequence.clone();
            writers.push(petrel::runtime::spawn(async move {
                loop {
                    let sequence = next_sequence.get();
                    next_sequence.set(sequence + 1);
                    let outcome = log
                        .append(testkit::numbered_batch(sequence).into(), 0)
                        .await?;
                    log.wait_durable(outcome.last_offset + 1).await?;
                    // Printed only after fdatasync: every ACK line is a durability promise.
                    // A short blocking write to a pipe the test drains; this is a test tool.
                    println!("ACK {sequence} {}", outcome.base_offset);
                    std::io::stdout().flush()?;
                    if sequence.is_multiple_of(50) {
                        petrel::runtime::time::sleep(Duration::from_micros(100)).await;
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), anyhow::Error>(())
            }));
        }
        for writer in writers {
            writer.await?;
        }
        Ok::<(), anyhow::Error>(())
    })?
}
