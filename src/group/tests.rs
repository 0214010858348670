//! The group state machine under a fake clock.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::state::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn limits() -> GroupLimits {
    GroupLimits {
        session_timeout_min: Duration::from_secs(6),
        session_timeout_max: Duration::from_secs(300),
        initial_rebalance_delay: Duration::from_secs(3),
        members_max: 10,
        ..GroupLimits::default()
    }
}

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        require_known_member_id: true,
    }
}

/// Two-step join (KIP-394); returns the member id and leaves the join pending.
fn join_new(group: &mut Group, now: Instant, protocols: &[&str]) -> String {
    let JoinOutcome::MemberIdRequired(member_id) =
        group.join(now, request("", protocols), &limits())
    else {
        panic!("a new member must first be given its id");
    };
    match group.join(now, request(&member_id, protocols), &limits()) {
        JoinOutcome::Pending { member_id: pending } => assert_eq!(pending, member_id),
        other => panic!("expected a pending join, got {other:?}"),
    }
    member_id
}

fn joined(group: &mut Group) -> Vec<JoinResult> {
    group
        .take_completions()
        .into_iter()
        .map(|c| match c {
            Completion::Join { result, .. } => result.expect("join succeeded"),
            other => panic!("expected a join completion, got {other:?}"),
        })
        .collect()
}

#[test]
fn first_rebalance_waits_the_initial_delay_then_elects_a_leader() {
    let t0 = Instant::now();
    let mut group = Group::new("g", &limits());
    let first = join_new(&mut group, t0, &["range", "roundrobin"]);
    let second = join_new(
        &mut group,
        t0 + Duration::from_secs(1),
        &["roundrobin", "range"],
    );
    group.tick(t0 + Duration::from_secs(2));
    assert!(
        group.take_completions().is_empty(),
        "still inside the initial delay"
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    group.tick(t0 + Duration::from_secs(3));
    let results = joined(&mut group);
    assert_eq!(results.len(), 2);
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert_eq!(group.generation(), 1);
    let leader = results
        .iter()
        .find(|r| r.member_id == r.leader)
        .expect("a leader");
    assert_eq!(leader.members.len(), 2, "the leader sees every member");
    let follower = results
        .iter()
        .find(|r| r.member_id != r.leader)
        .expect("a follower");
    assert!(follower.members.is_empty());
    // The first to join leads; a tie (one vote each) goes to the leader's preference.
    assert_eq!(leader.member_id, first);
    assert_eq!(leader.protocol.as_deref(), Some("range"));
    assert!(results
        .iter()
        .all(|r| r.generation == 1
            && [first.as_str(), second.as_str()].contains(&r.member_id.as_str())));
}

#[test]
fn sync_hands_out_the_leaders_assignments() {
    let t0 = Instant::now();
    let mut group = Group::new("g", &limits());
    let a = join_new(&mut group, t0, &["range"]);
    let b = join_new(&mut group, t0, &["range"]);
    group.tick(t0 + Duration::from_secs(3));
    let results = joined(&mut group);
    let leader = results[0].leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    // Wrong generation, unknown member, then a follower that must wait for the leader.
    assert_eq!(
        group.sync(t0, &follower, None, 7, vec![]),
        SyncOutcome::Done(Err(GroupError::IllegalGeneration))
    );
    assert_eq!(
        group.sync(t0, "stranger", None, 1, vec![]),
        SyncOutcome::Done(Err(GroupError::UnknownMemberId))
    );
    assert_eq!(
        group.sync(t0, &follower, None, 1, vec![]),
        SyncOutcome::Pending
    );
    let assignments = vec![
        (leader.clone(), Bytes::from_static(b"L")),
        (follower.clone(), Bytes::from_static(b"F")),
    ];
    assert_eq!(
        group.sync(t0, &leader, None, 1, assignments),
        SyncOutcome::Done(Ok(Bytes::from_static(b"L")))
    );
    assert_eq!(
        group.take_completions(),
        vec![Completion::Sync {
            member_id: follower.clone(),
            result: Ok(Bytes::from_static(b"F"))
        }]
    );
    assert_eq!(group.state(), GroupState::Stable);
    // In a stable group a sync answers at once.
    assert_eq!(
        group.sync(t0, &follower, None, 1, vec![]),
        SyncOutcome::Done(Ok(Bytes::from_static(b"F")))
    );
    assert_eq!(group.heartbeat(t0, &follower, None, 1), Ok(()));
}

/// A stable group of the given size at generation 1, with everyone synced.
fn stable_group(t0: Instant, size: usize) -> (Group, Vec<String>) {
    let mut group = Group::new("g", &limits());
    let members: Vec<String> = (0..size)
        .map(|_| join_new(&mut group, t0, &["range"]))
        .collect();
    group.tick(t0 + Duration::from_secs(3));
    let leader = joined(&mut group)[0].leader.clone();
    let assignments = members
        .iter()
        .map(|m| (m.clone(), Bytes::from(m.clone())))
        .collect();
    assert!(matches!(
        group.sync(t0, &leader, None, 1, assignments),
        SyncOutcome::Done(Ok(_))
    ));
    group.take_completions();
    assert_eq!(group.state(), GroupState::Stable);
    (group, members)
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let t0 = Instant::now();
    let (mut group, members) = stable_group(t0, 2);
    let (alive, silent) = (&members[0], &members[1]);
    // The live member heartbeats; the other says nothing.
    for second in [3, 6, 9] {
        assert_eq!(
            group.heartbeat(t0 + Duration::from_secs(second), alive, None, 1),
            Ok(())
        );
        group.tick(t0 + Duration::from_secs(second));
    }
    assert_eq!(
        group.state(),
        GroupState::Stable,
        "within the session timeout"
    );
    group.tick(t0 + SESSION + Duration::from_secs(3));
    assert_eq!(
        group.state(),
        GroupState::PreparingRebalance,
        "the silent member's session expired"
    );
    assert_eq!(
        group.heartbeat(t0 + SESSION, silent, None, 1),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        group.heartbeat(t0 + SESSION, alive, None, 1),
        Err(GroupError::RebalanceInProgress)
    );
    // The survivor rejoins and the group moves on without the silent member.
    assert!(matches!(
        group.join(t0 + SESSION, request(alive, &["range"]), &limits()),
        JoinOutcome::Pending { .. }
    ));
    let results = joined(&mut group);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].generation, 2);
    assert_eq!(results[0].leader, *alive);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let t0 = Instant::now();
    let (mut group, members) = stable_group(t0, 3);
    // A newcomer triggers a rebalance; only one old member rejoins.
    let newcomer = join_new(&mut group, t0, &["range"]);
    assert!(matches!(
        group.join(t0, request(&members[0], &["range"]), &limits()),
        JoinOutcome::Pending { .. }
    ));
    // Keep the laggards' sessions alive so only the rebalance timeout applies.
    for step in 1..=3 {
        let now = t0 + Duration::from_secs(step * 9);
        for laggard in &members[1..] {
            let _ = group.heartbeat(now, laggard, None, 1);
        }
        group.tick(now);
    }
    assert!(
        group.take_completions().is_empty(),
        "waiting for everyone until the rebalance timeout"
    );
    group.tick(t0 + REBALANCE);
    let results = joined(&mut group);
    let ids: Vec<&str> = results.iter().map(|r| r.member_id.as_str()).collect();
    assert_eq!(results.len(), 2);
    assert!(ids.contains(&newcomer.as_str()) && ids.contains(&members[0].as_str()));
    assert_eq!(
        group.heartbeat(t0 + REBALANCE, &members[1], None, 2),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn leaving_rebalances_and_the_last_leaver_empties_the_group() {
    let t0 = Instant::now();
    let (mut group, members) = stable_group(t0, 2);
    assert_eq!(group.leave(t0, &members[1], None), Ok(()));
    assert_eq!(
        group.leave(t0, &members[1], None),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert!(matches!(
        group.join(t0, request(&members[0], &["range"]), &limits()),
        JoinOutcome::Pending { .. }
    ));
    assert_eq!(joined(&mut group)[0].generation, 2);
    assert_eq!(group.leave(t0, &members[0], None), Ok(()));
    assert_eq!(group.state(), GroupState::Empty);
    assert!(group.is_empty());
    assert_eq!(
        group.protocol_type(),
        Some("consumer"),
        "an emptied consumer group keeps its type"
    );
}

#[test]
fn generations_fence_stale_members() {
    let t0 = Instant::now();
    let (mut group, members) = stable_group(t0, 1);
    assert_eq!(
        group.heartbeat(t0, &members[0], None, 0),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        group.check_commit(&members[0], None, 0),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(group.check_commit(&members[0], None, 1), Ok(()));
    assert_eq!(
        group.check_commit("", None, -1),
        Err(GroupError::UnknownMemberId),
        "the group is in use"
    );
    assert_eq!(
        Group::new("empty", &limits()).check_commit("", None, -1),
        Ok(()),
        "offsets without group management"
    );
    assert_eq!(
        group.join(t0, request("nobody", &["range"]), &limits()),
        JoinOutcome::Done(Err(GroupError::UnknownMemberId))
    );
}

#[test]
fn protocol_and_session_checks() {
    let t0 = Instant::now();
    let (mut group, _) = stable_group(t0, 1);
    assert_eq!(
        group.join(t0, request("", &["cooperative-sticky"]), &limits()),
        JoinOutcome::Done(Err(GroupError::InconsistentGroupProtocol))
    );
    let mut other_type = request("", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        group.join(t0, other_type, &limits()),
        JoinOutcome::Done(Err(GroupError::InconsistentGroupProtocol))
    );
    let mut short = request("", &["range"]);
    short.session_timeout = Duration::from_secs(1);
    assert_eq!(
        group.join(t0, short, &limits()),
        JoinOutcome::Done(Err(GroupError::InvalidSessionTimeout))
    );
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_self() {
    let t0 = Instant::now();
    let mut group = Group::new("g", &limits());
    let mut first = request("", &["range"]);
    first.instance_id = Some("host-1".into());
    let JoinOutcome::Pending { member_id: old_id } = group.join(t0, first.clone(), &limits())
    else {
        panic!("static members skip MEMBER_ID_REQUIRED");
    };
    group.tick(t0 + Duration::from_secs(3));
    joined(&mut group);
    assert!(matches!(
        group.sync(
            t0,
            &old_id,
            Some("host-1"),
            1,
            vec![(old_id.clone(), Bytes::from_static(b"A"))]
        ),
        SyncOutcome::Done(Ok(_))
    ));
    // The process restarts: same instance id, no member id.
    let restarted = t0 + Duration::from_secs(5);
    let JoinOutcome::Done(Ok(result)) = group.join(restarted, first, &limits()) else {
        panic!("a known static member rejoins at once");
    };
    assert_ne!(result.member_id, old_id);
    assert_eq!(result.generation, 1, "no rebalance");
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(
        group.sync(restarted, &result.member_id, Some("host-1"), 1, vec![]),
        SyncOutcome::Done(Ok(Bytes::from_static(b"A")))
    );
    // The old instance is fenced.
    assert_eq!(
        group.heartbeat(restarted, &old_id, Some("host-1"), 1),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        group.join(
            restarted,
            JoinRequest {
                member_id: old_id.clone(),
                instance_id: Some("host-1".into()),
                ..request("", &["range"])
            },
            &limits()
        ),
        JoinOutcome::Done(Err(GroupError::FencedInstanceId))
    );
    assert_eq!(
        group.leave(restarted, &old_id, Some("host-1")),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        group.leave(restarted, "", Some("host-1")),
        Ok(()),
        "leaving by instance id"
    );
}

#[test]
fn unused_member_ids_expire_and_the_group_size_is_bounded() {
    let t0 = Instant::now();
    let mut group = Group::new("g", &limits());
    let JoinOutcome::MemberIdRequired(unused) = group.join(t0, request("", &["range"]), &limits())
    else {
        panic!("id first");
    };
    group.tick(t0 + SESSION + Duration::from_secs(1));
    assert_eq!(
        group.join(t0 + SESSION, request(&unused, &["range"]), &limits()),
        JoinOutcome::Done(Err(GroupError::UnknownMemberId))
    );
    for _ in 0..limits().members_max {
        assert!(matches!(
            group.join(t0, request("", &["range"]), &limits()),
            JoinOutcome::MemberIdRequired(_)
        ));
    }
    assert_eq!(
        group.join(t0, request("", &["range"]), &limits()),
        JoinOutcome::Done(Err(GroupError::GroupMaxSizeReached))
    );
}

/// The offsets log compacts to a snapshot and reloads to the same offsets.
#[test]
fn committed_offsets_survive_compaction_and_reopen() {
    use crate::group::coordinator::GroupCoordinator;
    use crate::group::offsets::Committed;
    use crate::storage::{ShardStorage, ShardStorageConfig};
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();
    crate::runtime::run_single("offsets-test", dir.clone(), move || async move {
        let storage = || ShardStorage::new(&ShardStorageConfig::default());
        let offsets_dir = dir.join("offsets");
        let coordinator = GroupCoordinator::open(storage(), offsets_dir.clone(), limits())
            .await
            .expect("open");
        let commit = |offset: i64| {
            (
                "t".to_string(),
                0,
                Committed {
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                    timestamp_ms: 0,
                },
            )
        };
        // Enough commits of one key to trigger compaction more than once.
        for offset in 0..25_000 {
            coordinator
                .commit("g", "", None, -1, vec![commit(offset)])
                .await
                .expect("commit");
        }
        coordinator
            .commit(
                "h",
                "",
                None,
                -1,
                vec![(
                    "t".to_string(),
                    1,
                    Committed {
                        offset: 7,
                        leader_epoch: 2,
                        metadata: Some("m".into()),
                        timestamp_ms: 5,
                    },
                )],
            )
            .await
            .expect("commit");
        coordinator.close().await;
        let log_bytes: u64 = std::fs::read_dir(&offsets_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        // 25,000 uncompacted commit batches would take several MB.
        assert!(
            log_bytes < 2 << 20,
            "the offsets log was not compacted: {log_bytes} bytes"
        );
        let reopened = GroupCoordinator::open(storage(), offsets_dir, limits())
            .await
            .expect("reopen");
        assert_eq!(
            reopened.fetch("g", None)[0].2.as_ref().map(|c| c.offset),
            Some(24_999)
        );
        let h = reopened.fetch("h", Some(vec![("t".to_string(), 1)]));
        assert_eq!(
            h[0].2
                .as_ref()
                .map(|c| (c.offset, c.leader_epoch, c.metadata.clone())),
            Some((7, 2, Some("m".to_string())))
        );
        reopened.close().await;
    })
    .expect("executor");
}

/// Runs `work` on its own thread and fails if it has not finished within `limit`: a
/// watchdog for work that must be linear (a quadratic version would run for hours).
fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver
        .recv_timeout(limit)
        .expect("did not finish within the watchdog: quadratic?")
}

#[test]
fn protocol_support_is_recounted_after_every_change() {
    let t0 = Instant::now();
    let mut group = Group::new("g", &limits());
    let check = |group: &Group, step: &str| {
        assert!(
            group.protocol_support_matches_members(),
            "protocol_support drifted after {step}"
        );
    };
    let a = join_new(&mut group, t0, &["range", "roundrobin"]);
    check(&group, "a joins");
    let b = join_new(&mut group, t0, &["roundrobin", "range", "range"]);
    check(&group, "b joins, naming a protocol twice");
    group.tick(t0 + Duration::from_secs(3));
    check(&group, "the first rebalance");
    joined(&mut group);
    // A rejoins with other protocols (one still common).
    assert!(matches!(
        group.join(t0, request(&a, &["roundrobin", "sticky"]), &limits()),
        JoinOutcome::Pending { .. }
    ));
    check(&group, "a rejoins with new protocols");
    // A join with nothing in common is refused and changes nothing.
    assert_eq!(
        group.join(t0, request("", &["other"]), &limits()),
        JoinOutcome::Done(Err(GroupError::InconsistentGroupProtocol))
    );
    check(&group, "a refused join");
    // A static member, then its replacement under a new id with other protocols.
    let mut static_join = request("", &["roundrobin"]);
    static_join.instance_id = Some("host-1".into());
    assert!(matches!(
        group.join(t0, static_join.clone(), &limits()),
        JoinOutcome::Pending { .. }
    ));
    check(&group, "a static member joins");
    static_join.protocols = vec![
        ("roundrobin".into(), Bytes::new()),
        ("cooperative".into(), Bytes::new()),
    ];
    group.join(t0, static_join, &limits());
    check(&group, "the static member is replaced");
    assert_eq!(group.leave(t0, &b, None), Ok(()));
    check(&group, "b leaves");
    // Everyone else goes silent: removed at the rebalance timeout or by session expiry.
    group.tick(t0 + REBALANCE);
    group.tick(t0 + REBALANCE + SESSION + SESSION);
    check(&group, "timeouts");
    assert!(group.members().is_empty(), "everyone timed out");
}

#[test]
fn a_join_with_many_protocols_costs_its_size() {
    const PROTOCOLS: usize = 100_000;
    let rebalanced = within(Duration::from_secs(60), || {
        let t0 = Instant::now();
        let mut group = Group::new("g", &limits());
        let names = |prefix: &str| -> Vec<String> {
            (0..PROTOCOLS)
                .map(|i| format!("{prefix}-{i}"))
                .chain(["shared".to_string()])
                .collect()
        };
        let join = |group: &mut Group, prefix: &str| {
            let owned = names(prefix);
            let protocols: Vec<&str> = owned.iter().map(String::as_str).collect();
            join_new(group, t0, &protocols)
        };
        // Each member supports many protocols; only the last is common to all.
        join(&mut group, "a");
        join(&mut group, "b");
        join(&mut group, "c");
        group.tick(t0 + Duration::from_secs(3));
        joined(&mut group)
    });
    assert_eq!(rebalanced.len(), 3);
    assert!(rebalanced
        .iter()
        .all(|r| r.protocol.as_deref() == Some("shared")));
}

/// The tick hint must never hide work: a pending member id given back lets a waiting
/// rebalance complete at once, without waiting for a deadline.
#[test]
fn a_rebalance_waiting_only_for_a_pending_id_completes_when_it_leaves() {
    let t0 = Instant::now();
    let (mut group, members) = stable_group(t0, 1);
    let JoinOutcome::MemberIdRequired(pending) = group.join(t0, request("", &["range"]), &limits())
    else {
        panic!("id first");
    };
    // The member rejoins: the rebalance now waits for the pending id too.
    assert!(matches!(
        group.join(t0, request(&members[0], &["range"]), &limits()),
        JoinOutcome::Pending { .. }
    ));
    assert!(group.take_completions().is_empty());
    assert_eq!(group.leave(t0, &pending, None), Ok(()));
    group.tick(t0);
    let results = joined(&mut group);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].generation, 2);
}

mod coordinator {
    use std::path::{Path, PathBuf};
    use std::rc::Rc;
    use std::time::Duration;

    use bytes::Bytes;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::{limits, request};
    use crate::group::coordinator::{GroupCoordinator, JoinAnswer};
    use crate::group::offsets::Committed;
    use crate::group::state::{GroupError, GroupLimits};
    use crate::storage::{ShardStorage, ShardStorageConfig};

    const RETENTION_MS: i64 = 60_000;

    fn fast_limits() -> GroupLimits {
        GroupLimits {
            initial_rebalance_delay: Duration::ZERO,
            offsets_retention: Duration::from_millis(RETENTION_MS as u64),
            ..limits()
        }
    }

    async fn open(dir: &Path) -> Rc<GroupCoordinator> {
        let storage = ShardStorage::new(&ShardStorageConfig::default());
        GroupCoordinator::open(storage, dir.join("offsets"), fast_limits())
            .await
            .expect("open")
    }

    /// Runs `test` on a single executor with a fresh directory.
    fn run<F, Fut>(test: F)
    where
        F: FnOnce(PathBuf) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        crate::runtime::run_single("coordinator-test", dir.clone(), move || test(dir))
            .expect("executor");
    }

    fn offset(offset: i64, timestamp_ms: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: None,
            timestamp_ms,
        }
    }

    fn fetched(coordinator: &GroupCoordinator, group: &str) -> Vec<(String, i32, i64)> {
        coordinator
            .fetch(group, None)
            .into_iter()
            .filter_map(|(t, p, c)| c.map(|c| (t, p, c.offset)))
            .collect()
    }

    fn ids(coordinator: &GroupCoordinator) -> Vec<String> {
        let mut ids: Vec<String> = coordinator
            .list()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        ids.sort();
        ids
    }

    /// A consumer's subscription metadata naming `topics`.
    fn subscription(topics: &[&str]) -> Bytes {
        let mut subscription = kafka_protocol::messages::ConsumerProtocolSubscription::default();
        subscription.topics = topics
            .iter()
            .map(|t| StrBytes::from_string(t.to_string()))
            .collect();
        let mut bytes = bytes::BytesMut::new();
        bytes.extend_from_slice(&0i16.to_be_bytes());
        subscription.encode(&mut bytes, 0).expect("encode");
        bytes.freeze()
    }

    /// One member joins (no MEMBER_ID_REQUIRED step) and syncs: a stable group of one.
    async fn stable_member(coordinator: &GroupCoordinator, group: &str, topics: &[&str]) -> String {
        let mut join = request("", &["range"]);
        join.require_known_member_id = false;
        join.protocols = vec![("range".into(), subscription(topics))];
        let JoinAnswer::Joined(joined) = coordinator.join(group, join).await else {
            panic!("join");
        };
        let member = joined.member_id.clone();
        coordinator
            .sync(group, &member, None, joined.generation, vec![])
            .await
            .expect("sync");
        member
    }

    #[test]
    fn rejected_joins_leave_no_group() {
        run(|dir| async move {
            let coordinator = open(&dir).await;
            let mut short = request("", &["range"]);
            short.session_timeout = Duration::from_millis(1);
            assert!(matches!(
                coordinator.join("short", short).await,
                JoinAnswer::Failed(GroupError::InvalidSessionTimeout)
            ));
            assert!(matches!(
                coordinator
                    .join("absent", request("someone", &["range"]))
                    .await,
                JoinAnswer::Failed(GroupError::UnknownMemberId)
            ));
            assert!(coordinator.list().is_empty(), "{:?}", coordinator.list());
            assert!(coordinator.describe("short").is_none());
            coordinator.close().await;
        });
    }

    #[test]
    fn expired_offsets_and_groups_are_gone_and_stay_gone_after_reopen() {
        run(|dir| async move {
            let coordinator = open(&dir).await;
            let now_ms = crate::runtime::time::now_ms();
            let old = now_ms - RETENTION_MS;
            let commit = |group: &'static str, member: String, generation, topic: &str, at| {
                let coordinator = coordinator.clone();
                let entries = vec![(topic.to_string(), 0, offset(7, at))];
                async move {
                    coordinator
                        .commit(group, &member, None, generation, entries)
                        .await
                        .expect("commit");
                }
            };
            // Standalone committers: each offset by its commit time.
            commit("simple", String::new(), -1, "old", old).await;
            commit("simple", String::new(), -1, "new", now_ms).await;
            commit("gone", String::new(), -1, "old", old).await;
            // A consumer group that emptied: everything goes once it has been empty long enough.
            let member = stable_member(&coordinator, "emptied", &["read"]).await;
            commit("emptied", member.clone(), 1, "read", now_ms).await;
            assert_eq!(
                coordinator.leave("emptied", vec![(member, None)]),
                vec![Ok(())]
            );
            // A stable consumer group: only topics nobody subscribes to.
            let member = stable_member(&coordinator, "stable", &["read"]).await;
            commit("stable", member.clone(), 1, "read", old).await;
            commit("stable", member, 1, "dropped", old).await;

            let now = std::time::Instant::now();
            assert_eq!(coordinator.expire(now, now_ms).await.expect("expire"), 3);
            assert_eq!(fetched(&coordinator, "simple"), [("new".into(), 0, 7)]);
            assert_eq!(fetched(&coordinator, "stable"), [("read".into(), 0, 7)]);
            assert_eq!(fetched(&coordinator, "emptied"), [("read".into(), 0, 7)]);
            assert_eq!(ids(&coordinator), ["emptied", "simple", "stable"]);
            // Later: the emptied group has been empty for the whole retention.
            let later = now + Duration::from_millis(RETENTION_MS as u64);
            assert_eq!(
                coordinator
                    .expire(later, now_ms + RETENTION_MS)
                    .await
                    .expect("expire"),
                2,
                "the emptied group's offset and the standalone one committed at `now_ms`"
            );
            assert!(fetched(&coordinator, "emptied").is_empty());
            assert_eq!(
                ids(&coordinator),
                ["stable"],
                "emptied groups without offsets go"
            );
            coordinator.close().await;

            let reopened = open(&dir).await;
            assert!(fetched(&reopened, "gone").is_empty());
            assert!(fetched(&reopened, "emptied").is_empty());
            assert!(fetched(&reopened, "simple").is_empty());
            assert_eq!(fetched(&reopened, "stable"), [("read".into(), 0, 7)]);
            assert_eq!(ids(&reopened), ["stable"]);
            reopened.close().await;
        });
    }

    /// A commit appended but not yet applied when another commit compacts the log must
    /// survive a restart (the compaction must not delete its segment without it).
    #[test]
    fn a_commit_racing_a_compaction_survives_reopen() {
        run(|dir| async move {
            let coordinator = open(&dir).await;
            let commit = |topic: &'static str, value: i64| {
                let coordinator = coordinator.clone();
                async move {
                    coordinator
                        .commit("g", "", None, -1, vec![(topic.into(), 0, offset(value, 0))])
                        .await
                        .expect("commit")
                }
            };
            for _ in 0..10 {
                commit("a", 1).await;
            }
            let (arrived, release) = coordinator.pause_next_apply();
            let paused = glommio::spawn_local(commit("c", 3));
            arrived.await.expect("the commit reached its pause");
            // The next commit makes the log worth compacting.
            coordinator.set_compaction_slack_records(0);
            let compacting = glommio::spawn_local(commit("d", 4));
            crate::runtime::time::sleep(Duration::from_millis(50)).await;
            let _ = release.send(());
            paused.await;
            compacting.await;
            coordinator.close().await;
            let reopened = open(&dir).await;
            assert_eq!(
                fetched(&reopened, "g"),
                [("a".into(), 0, 1), ("c".into(), 0, 3), ("d".into(), 0, 4)]
            );
            reopened.close().await;
        });
    }

    /// The same for an OffsetDelete: its removal must not be undone by a snapshot taken
    /// before it was applied.
    #[test]
    fn a_deletion_racing_a_compaction_survives_reopen() {
        run(|dir| async move {
            let coordinator = open(&dir).await;
            let commit = |topic: &'static str, value: i64| {
                let coordinator = coordinator.clone();
                async move {
                    coordinator
                        .commit("g", "", None, -1, vec![(topic.into(), 0, offset(value, 0))])
                        .await
                        .expect("commit")
                }
            };
            for _ in 0..10 {
                commit("a", 1).await;
            }
            commit("b", 2).await;
            let (arrived, release) = coordinator.pause_next_apply();
            let deleting = {
                let coordinator = coordinator.clone();
                glommio::spawn_local(async move {
                    coordinator
                        .delete_offsets("g", vec![("b".into(), 0)])
                        .await
                        .expect("delete")
                })
            };
            arrived.await.expect("the deletion reached its pause");
            coordinator.set_compaction_slack_records(0);
            let compacting = glommio::spawn_local(commit("d", 4));
            crate::runtime::time::sleep(Duration::from_millis(50)).await;
            let _ = release.send(());
            assert_eq!(deleting.await, [true]);
            compacting.await;
            coordinator.close().await;
            let reopened = open(&dir).await;
            assert_eq!(
                fetched(&reopened, "g"),
                [("a".into(), 0, 1), ("d".into(), 0, 4)]
            );
            reopened.close().await;
        });
    }

    /// A leader's epoch that the test takes away; "committed" once durable.
    struct FakeLeader {
        log: Rc<crate::storage::Log>,
        epoch: std::cell::Cell<Option<i32>>,
    }

    impl crate::group::coordinator::LeaderLog for FakeLeader {
        fn leader_epoch(&self) -> Option<i32> {
            self.epoch.get()
        }

        fn committed(
            &self,
            end_offset: i64,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), crate::storage::StorageError>> + '_>,
        > {
            Box::pin(self.log.wait_durable(end_offset))
        }
    }

    /// A cluster's coordinator writes with its partition's leader epoch, refuses writes
    /// once leadership is gone, and when unloaded answers NOT_COORDINATOR to waiting and
    /// later calls; the next coordinator loaded from the same log has every commit.
    #[test]
    fn a_replicated_coordinator_follows_its_partitions_leadership() {
        use crate::group::coordinator::CommitError;
        use crate::storage::{Log, LogConfig};
        run(|dir| async move {
            let storage = ShardStorage::new(&ShardStorageConfig::default());
            let log = Log::open(
                storage,
                dir.join("offsets-0"),
                "offsets-0".into(),
                LogConfig::default(),
            )
            .await
            .expect("open");
            let leader = Rc::new(FakeLeader {
                log: log.clone(),
                epoch: std::cell::Cell::new(Some(5)),
            });
            let coordinator =
                GroupCoordinator::load(log.clone(), Some(leader.clone()), fast_limits())
                    .await
                    .expect("load");
            coordinator
                .commit("g", "", None, -1, vec![("t".into(), 0, offset(42, 1))])
                .await
                .expect("commit");
            assert_eq!(log.latest_epoch(), Some(5), "stamped with the leader epoch");

            // A second member makes the first rejoin: its join waits.
            let first = stable_member(&coordinator, "members", &["t"]).await;
            let mut join = request("", &["range"]);
            join.require_known_member_id = false;
            let waiting = {
                let coordinator = coordinator.clone();
                glommio::spawn_local(async move { coordinator.join("members", join).await })
            };
            crate::runtime::time::sleep(Duration::from_millis(50)).await;

            leader.epoch.set(None);
            let refused = coordinator
                .commit("g", "", None, -1, vec![("t".into(), 0, offset(43, 2))])
                .await;
            assert!(
                matches!(refused, Err(CommitError::Storage(_))),
                "{refused:?}"
            );

            coordinator.unload().await;
            assert!(matches!(
                waiting.await,
                JoinAnswer::Failed(GroupError::NotCoordinator)
            ));
            assert_eq!(
                coordinator.heartbeat("members", &first, None, 1),
                Err(GroupError::NotCoordinator)
            );
            let late = coordinator
                .commit("g", "", None, -1, vec![("t".into(), 0, offset(44, 3))])
                .await;
            assert_eq!(late, Err(CommitError::Group(GroupError::NotCoordinator)));

            leader.epoch.set(Some(6));
            let next = GroupCoordinator::load(log.clone(), Some(leader), fast_limits())
                .await
                .expect("load");
            assert_eq!(fetched(&next, "g"), [("t".to_string(), 0, 42)]);
            next.close().await;
            log.close().await.expect("close");
        });
    }
}
