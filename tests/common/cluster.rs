//! A cluster of real `petrel` processes on loopback: each node formatted with one cluster
//! id, its own data directory, a Kafka port chosen at each start and a fixed quorum port.
//! Nodes can be killed (SIGKILL), paused (SIGSTOP) and restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use super::proxy::Proxy;
use super::Raw;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

pub struct Node {
    pub id: i32,
    pub dir: PathBuf,
    pub quorum_port: u16,
    pub child: Option<Child>,
    /// host:port of its (first) Kafka listener while it runs.
    pub address: String,
    /// Every listener's name and host:port while it runs.
    pub listeners: Vec<(String, String)>,
    /// Flags for this node only, after the cluster's (e.g. `--inject-faults`).
    pub extra: Vec<String>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub voters: String,
    pub extra: Vec<String>,
    /// With `start_with_links`: a proxy per quorum link, by (from id, to id).
    pub links: BTreeMap<(i32, i32), Proxy>,
    /// With `start_logged`: each node's stderr goes to `node-<id>.log` here (appended
    /// across restarts) instead of the test's stderr.
    logs: Option<PathBuf>,
    _temp: tempfile::TempDir,
}

/// A port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

pub fn petrel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petrel"))
}

pub fn format(dir: &std::path::Path, cluster_id: &str, node_id: i32) {
    format_with(dir, cluster_id, node_id, &[]);
}

/// `petrel format` with more flags (e.g. `--add-scram`).
pub fn format_with(dir: &std::path::Path, cluster_id: &str, node_id: i32, extra: &[&str]) {
    let output = petrel()
        .args(["format", "--cluster-id", cluster_id, "--node-id"])
        .arg(node_id.to_string())
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run petrel format");
    assert!(output.status.success(), "format failed: {output:?}");
}

impl Cluster {
    /// Formats `size` nodes and starts them all; returns once every one serves.
    pub fn start(size: i32, extra: &[&str]) -> Cluster {
        Cluster::start_nodes(size, extra, false, false, &[])
    }

    /// As `start`, each node formatted with `format_extra` too, with each node's log
    /// (stderr, at `PETREL_TEST_LOG` or info, raft-rs at debug) kept in a file for
    /// `log_of`.
    pub fn start_logged(size: i32, extra: &[&str], format_extra: &[&str]) -> Cluster {
        Cluster::start_nodes(size, extra, false, true, format_extra)
    }

    /// What node `index` has logged so far (`start_logged`).
    pub fn log_of(&self, index: usize) -> String {
        let dir = self.logs.as_ref().expect("started with start_logged");
        std::fs::read_to_string(dir.join(format!("node-{}.log", self.nodes[index].id)))
            .unwrap_or_default()
    }

    /// As `start`, with every quorum link through its own proxy (`cut_quorum_links`):
    /// each node names the others in its voters by the proxy of that link.
    pub fn start_with_links(size: i32, extra: &[&str]) -> Cluster {
        Cluster::start_nodes(size, extra, true, false, &[])
    }

    /// As `start_with_links`, each node formatted with `format_extra` (e.g. `--add-scram`).
    pub fn start_with_links_formatted(size: i32, extra: &[&str], format_extra: &[&str]) -> Cluster {
        Cluster::start_nodes(size, extra, true, false, format_extra)
    }

    fn start_nodes(
        size: i32,
        extra: &[&str],
        proxied: bool,
        logged: bool,
        format_extra: &[&str],
    ) -> Cluster {
        let temp = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<Node> = (1..=size)
            .map(|id| {
                let dir = temp.path().join(format!("node-{id}"));
                format_with(&dir, "petrel-test", id, format_extra);
                Node {
                    id,
                    dir,
                    quorum_port: free_port(),
                    child: None,
                    address: String::new(),
                    listeners: Vec::new(),
                    extra: Vec::new(),
                }
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|node| format!("{}@127.0.0.1:{}", node.id, node.quorum_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut links = BTreeMap::new();
        for from in nodes.iter().filter(|_| proxied) {
            for to in nodes.iter().filter(|to| to.id != from.id) {
                let target: std::net::SocketAddr = format!("127.0.0.1:{}", to.quorum_port)
                    .parse()
                    .expect("address");
                links.insert((from.id, to.id), Proxy::start(target));
            }
        }
        let mut cluster = Cluster {
            nodes,
            voters,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            links,
            logs: logged.then(|| temp.path().to_path_buf()),
            _temp: temp,
        };
        // Together: none can serve before a quorum has elected a leader.
        let started: Vec<ChildStdout> = (0..cluster.nodes.len())
            .map(|index| cluster.spawn(index))
            .collect();
        for (index, stdout) in started.into_iter().enumerate() {
            (cluster.nodes[index].address, cluster.nodes[index].listeners) = wait_listening(stdout);
        }
        cluster
    }

    /// The voters as node `index` names them: itself by its own address, every other by
    /// the proxy of the link to it (without proxies, the plain voters).
    fn voters_for(&self, index: usize) -> String {
        if self.links.is_empty() {
            return self.voters.clone();
        }
        let me = self.nodes[index].id;
        self.nodes
            .iter()
            .filter(|node| node.quorum_port != 0)
            .map(|node| match self.links.get(&(me, node.id)) {
                Some(proxy) => format!("{}@{}", node.id, proxy.address),
                None => format!("{}@127.0.0.1:{}", node.id, node.quorum_port),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Blackholes every quorum link from and to node `index` (needs `start_with_links`):
    /// it keeps running and serving clients, but hears from no voter and no voter from it.
    pub fn cut_quorum_links(&self, index: usize) {
        let id = self.nodes[index].id;
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.blackhole();
            }
        }
    }

    pub fn heal_quorum_links(&self, index: usize) {
        let id = self.nodes[index].id;
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.pass();
            }
        }
    }

    /// Formats and starts one more node that is not among the voters (a broker only);
    /// returns its index once it serves.
    pub fn add_broker(&mut self) -> usize {
        let id = self.nodes.iter().map(|node| node.id).max().unwrap_or(0) + 1;
        let dir = self._temp.path().join(format!("node-{id}"));
        format(&dir, "petrel-test", id);
        self.nodes.push(Node {
            id,
            dir,
            quorum_port: 0,
            child: None,
            address: String::new(),
            listeners: Vec::new(),
            extra: Vec::new(),
        });
        let index = self.nodes.len() - 1;
        let stdout = self.spawn(index);
        (self.nodes[index].address, self.nodes[index].listeners) = wait_listening(stdout);
        index
    }

    pub fn command(&self, index: usize) -> Command {
        let node = &self.nodes[index];
        let mut command = petrel();
        let listen: &[&str] = if self.extra.iter().any(|flag| flag == "--listeners") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        command
            .arg("serve")
            .args(listen)
            .args(["--shards", "1", "--node-id"])
            .arg(node.id.to_string())
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--controller-quorum-voters", &self.voters_for(index)]);
        // Fast failure detection unless the test chose its own.
        for (flag, value) in [
            ("--broker-heartbeat-interval-ms", "200"),
            ("--broker-session-timeout-ms", "2000"),
        ] {
            if !self.extra.iter().any(|given| given == flag) {
                command.args([flag, value]);
            }
        }
        // A logged cluster also keeps raft-rs's own lines (its term changes).
        let level = if self.logs.is_some() {
            "info,raft=debug"
        } else {
            "warn"
        };
        command.args(&self.extra).args(&node.extra).env(
            "PETREL_LOG",
            std::env::var("PETREL_TEST_LOG").unwrap_or(level.into()),
        );
        command
    }

    fn spawn(&mut self, index: usize) -> ChildStdout {
        let stderr = match &self.logs {
            None => Stdio::inherit(),
            Some(dir) => {
                let path = dir.join(format!("node-{}.log", self.nodes[index].id));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("node log file");
                Stdio::from(file)
            }
        };
        let mut child = self
            .command(index)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn petrel");
        let stdout = child.stdout.take().expect("stdout");
        self.nodes[index].child = Some(child);
        stdout
    }

    /// Starts every stopped node again, together (none serves before a quorum of them
    /// elected a leader), and waits until each serves.
    pub fn restart_all(&mut self) {
        let stopped: Vec<usize> = (0..self.nodes.len())
            .filter(|&index| self.nodes[index].child.is_none())
            .collect();
        let started: Vec<(usize, ChildStdout)> = stopped
            .into_iter()
            .map(|index| (index, self.spawn(index)))
            .collect();
        for (index, stdout) in started {
            (self.nodes[index].address, self.nodes[index].listeners) = wait_listening(stdout);
        }
    }

    /// Starts node `index` again on its data directory and waits until it serves.
    pub fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].child.is_none(), "node {index} still runs");
        let stdout = self.spawn(index);
        (self.nodes[index].address, self.nodes[index].listeners) = wait_listening(stdout);
    }

    fn signal(&self, index: usize, signal: i32) {
        let child = self.nodes[index].child.as_ref().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill(&mut self, index: usize) {
        self.signal(index, libc::SIGKILL);
        let mut child = self.nodes[index].child.take().expect("running");
        let _ = child.wait();
        self.nodes[index].address.clear();
    }

    /// SIGTERM, then waits: a graceful stop must exit 0.
    pub fn stop(&mut self, index: usize) {
        self.signal(index, libc::SIGTERM);
        let mut child = self.nodes[index].child.take().expect("running");
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "node {index} exited with {status} on SIGTERM"
        );
        self.nodes[index].address.clear();
    }

    pub fn pause(&self, index: usize) {
        self.signal(index, libc::SIGSTOP);
    }

    pub fn resume(&self, index: usize) {
        self.signal(index, libc::SIGCONT);
    }

    /// Kafka addresses of the running nodes, comma-separated (a client's bootstrap list).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.address.clone())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // SAFETY: our own child; a paused one must be able to die.
                unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Reads a starting node's stdout until it says where it listens: its first listener's
/// address, and every listener's.
fn wait_listening(stdout: ChildStdout) -> (String, Vec<(String, String)>) {
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .expect("petrel printed nothing (did it fail to start?)")
        .expect("read stdout");
    let address = first
        .strip_prefix("petrel listening on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (address, super::listeners_of(&first))
}

pub fn metadata(address: &str) -> MetadataResponse {
    let mut raw = Raw::connect(address);
    let mut request = MetadataRequest::default();
    request.topics = None; // every topic
    raw.call(ApiKey::Metadata, 12, &request)
}

/// Polls `check` until it holds, for up to 30 s.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CreateTopics with a replication factor and config overrides, retried while no
/// controller answers.
pub fn create_topic_with(
    address: &str,
    name: &str,
    partitions: i32,
    factor: i16,
    configs: &[(&str, &str)],
) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut topic = CreatableTopic::default();
        topic.name = super::topic_name(name);
        topic.num_partitions = partitions;
        topic.replication_factor = factor;
        topic.configs = configs
            .iter()
            .map(|(name, value)| {
                let mut config =
                    kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default(
                    );
                config.name = kafka_protocol::protocol::StrBytes::from_string(name.to_string());
                config.value = Some(kafka_protocol::protocol::StrBytes::from_string(
                    value.to_string(),
                ));
                config
            })
            .collect();
        let mut request = kafka_protocol::messages::CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 10_000;
        let mut raw = Raw::connect(address);
        let response: kafka_protocol::messages::CreateTopicsResponse =
            raw.call(ApiKey::CreateTopics, 7, &request);
        let code = response.topics[0].error_code;
        if code == 0 {
            return;
        }
        assert_eq!(
            code, 41,
            "creating {name}: {:?}",
            response.topics[0].error_message
        );
        assert!(Instant::now() < deadline, "no controller for {name}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Per partition of `topic`: (leader, ISR) as `address` sees them.
pub fn isrs(address: &str, topic: &str) -> Vec<(i32, BTreeSet<i32>)> {
    metadata(address)
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .map(|t| {
            let mut partitions: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        p.leader_id.0,
                        p.isr_nodes.iter().map(|b| b.0).collect::<BTreeSet<i32>>(),
                    )
                })
                .collect();
            partitions.sort_unstable_by_key(|p| p.0);
            partitions
                .into_iter()
                .map(|(_, leader, isr)| (leader, isr))
                .collect()
        })
        .unwrap_or_default()
}

/// The broker coordinating `group`, as `address` answers FindCoordinator (-1 while none).
pub fn coordinator_of(address: &str, group: &str) -> i32 {
    use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
    let mut request = FindCoordinatorRequest::default();
    request.coordinator_keys = vec![kafka_protocol::protocol::StrBytes::from_string(
        group.to_string(),
    )];
    let response: FindCoordinatorResponse =
        Raw::connect(address).call(ApiKey::FindCoordinator, 4, &request);
    let found = &response.coordinators[0];
    match found.error_code {
        0 => found.node_id.0,
        _ => -1,
    }
}
