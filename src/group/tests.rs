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
