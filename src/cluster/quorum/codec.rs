//! Petrel's own encoding of the Raft messages and journal records raft-rs works with.
//!
//! raft-rs ships protobuf types, but the quorum port is open to the network and rust-protobuf
//! 2's parser recurses without bound on nested unknown fields (RUSTSEC-2024-0437). So bytes
//! from peers and from the journal are decoded here instead: a flat, length-checked format
//! in which every count is checked against the bytes present before anything is allocated.
//! Sans-I/O, fuzzed (`fuzz/fuzz_targets/quorum_message.rs`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protobuf::ProtobufEnum;
use raft::eraftpb::{
    ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated: {0} needs more bytes than remain")]
    Truncated(&'static str),
    #[error("unknown {0} {1}")]
    Unknown(&'static str, i64),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

type Result<T> = std::result::Result<T, CodecError>;

/// A decoder over one message's bytes.
struct Reader(Bytes);

impl Reader {
    fn need(&self, bytes: usize, what: &'static str) -> Result<()> {
        if self.0.remaining() < bytes {
            return Err(CodecError::Truncated(what));
        }
        Ok(())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        self.need(1, what)?;
        Ok(self.0.get_u8())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        self.need(8, what)?;
        Ok(self.0.get_u64())
    }

    fn i64(&mut self, what: &'static str) -> Result<i64> {
        self.need(8, what)?;
        Ok(self.0.get_i64())
    }

    fn bool(&mut self, what: &'static str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(CodecError::Unknown(what, i64::from(other))),
        }
    }

    fn bytes(&mut self, what: &'static str) -> Result<Bytes> {
        self.need(4, what)?;
        let len = self.0.get_u32() as usize;
        self.need(len, what)?;
        Ok(self.0.split_to(len))
    }

    /// A count of items, each at least `item_bytes_min` long: checked against the bytes
    /// left, so a hostile count cannot size an allocation.
    fn count(&mut self, item_bytes_min: usize, what: &'static str) -> Result<usize> {
        self.need(4, what)?;
        let count = self.0.get_u32() as usize;
        if count.saturating_mul(item_bytes_min) > self.0.remaining() {
            return Err(CodecError::Truncated(what));
        }
        Ok(count)
    }

    fn ids(&mut self, what: &'static str) -> Result<Vec<u64>> {
        let count = self.count(8, what)?;
        (0..count).map(|_| self.u64(what)).collect()
    }

    fn finish(self) -> Result<()> {
        match self.0.remaining() {
            0 => Ok(()),
            left => Err(CodecError::Trailing(left)),
        }
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(u32::try_from(bytes.len()).expect("raft payloads are capped far below 4 GiB"));
    out.put_slice(bytes);
}

fn put_ids(out: &mut BytesMut, ids: &[u64]) {
    out.put_u32(ids.len() as u32);
    for id in ids {
        out.put_u64(*id);
    }
}

/// Smallest encoding of an entry: type, term, index, two empty byte strings, sync flag.
const ENTRY_BYTES_MIN: usize = 1 + 8 + 8 + 4 + 4 + 1;

fn put_entry(out: &mut BytesMut, entry: &Entry) {
    out.put_u8(entry.entry_type.value() as u8);
    out.put_u64(entry.term);
    out.put_u64(entry.index);
    put_bytes(out, &entry.data);
    put_bytes(out, &entry.context);
    out.put_u8(u8::from(entry.sync_log));
}

fn read_entry(reader: &mut Reader) -> Result<Entry> {
    let kind = reader.u8("entry type")?;
    Ok(Entry {
        entry_type: EntryType::from_i32(i32::from(kind))
            .ok_or(CodecError::Unknown("entry type", i64::from(kind)))?,
        term: reader.u64("entry term")?,
        index: reader.u64("entry index")?,
        data: reader.bytes("entry data")?,
        context: reader.bytes("entry context")?,
        sync_log: reader.bool("entry sync flag")?,
        ..Entry::default()
    })
}

fn put_conf_state(out: &mut BytesMut, state: &ConfState) {
    put_ids(out, &state.voters);
    put_ids(out, &state.learners);
    put_ids(out, &state.voters_outgoing);
    put_ids(out, &state.learners_next);
    out.put_u8(u8::from(state.auto_leave));
}

fn read_conf_state(reader: &mut Reader) -> Result<ConfState> {
    Ok(ConfState {
        voters: reader.ids("voters")?,
        learners: reader.ids("learners")?,
        voters_outgoing: reader.ids("outgoing voters")?,
        learners_next: reader.ids("next learners")?,
        auto_leave: reader.bool("auto leave")?,
        ..ConfState::default()
    })
}

fn put_snapshot(out: &mut BytesMut, snapshot: &Snapshot) {
    let metadata = snapshot.get_metadata();
    put_conf_state(out, metadata.get_conf_state());
    out.put_u64(metadata.index);
    out.put_u64(metadata.term);
    put_bytes(out, &snapshot.data);
}

fn read_snapshot(reader: &mut Reader) -> Result<Snapshot> {
    let mut metadata = SnapshotMetadata::default();
    metadata.set_conf_state(read_conf_state(reader)?);
    metadata.index = reader.u64("snapshot index")?;
    metadata.term = reader.u64("snapshot term")?;
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(metadata);
    snapshot.data = reader.bytes("snapshot data")?;
    Ok(snapshot)
}

/// Encodes a Raft message for a peer.
pub fn encode_message(message: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    out.put_u8(message.msg_type.value() as u8);
    out.put_u64(message.to);
    out.put_u64(message.from);
    out.put_u64(message.term);
    out.put_u64(message.log_term);
    out.put_u64(message.index);
    out.put_u32(message.entries.len() as u32);
    for entry in message.entries.iter() {
        put_entry(&mut out, entry);
    }
    out.put_u64(message.commit);
    out.put_u64(message.commit_term);
    match message.snapshot.as_ref() {
        Some(snapshot) => {
            out.put_u8(1);
            put_snapshot(&mut out, snapshot);
        }
        None => out.put_u8(0),
    }
    out.put_u64(message.request_snapshot);
    out.put_u8(u8::from(message.reject));
    out.put_u64(message.reject_hint);
    put_bytes(&mut out, &message.context);
    out.put_i64(message.priority);
    out.freeze()
}

/// Decodes a Raft message from a peer; any malformed input is an error, never a panic.
pub fn decode_message(bytes: Bytes) -> Result<Message> {
    let mut reader = Reader(bytes);
    let kind = reader.u8("message type")?;
    let mut message = Message {
        msg_type: MessageType::from_i32(i32::from(kind))
            .ok_or(CodecError::Unknown("message type", i64::from(kind)))?,
        to: reader.u64("to")?,
        from: reader.u64("from")?,
        term: reader.u64("term")?,
        log_term: reader.u64("log term")?,
        index: reader.u64("index")?,
        ..Message::default()
    };
    let entries = reader.count(ENTRY_BYTES_MIN, "entries")?;
    let mut list = Vec::with_capacity(entries);
    for _ in 0..entries {
        list.push(read_entry(&mut reader)?);
    }
    message.entries = list.into();
    message.commit = reader.u64("commit")?;
    message.commit_term = reader.u64("commit term")?;
    if reader.bool("snapshot flag")? {
        message.set_snapshot(read_snapshot(&mut reader)?);
    }
    message.request_snapshot = reader.u64("request snapshot")?;
    message.reject = reader.bool("reject")?;
    message.reject_hint = reader.u64("reject hint")?;
    message.context = reader.bytes("context")?;
    message.priority = reader.i64("priority")?;
    reader.finish()?;
    Ok(message)
}

/// One record of a node's Raft journal (`journal.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRecord {
    /// A log entry; a later entry with the same or a lower index replaces it and every
    /// entry after it (Raft's conflict truncation, written as an append).
    Entry(Entry),
    /// The node's term, vote and commit index.
    HardState(HardState),
    /// A snapshot: entries at or below its index are gone from the journal.
    Snapshot(Snapshot),
}

const RECORD_ENTRY: u8 = 1;
const RECORD_HARD_STATE: u8 = 2;
const RECORD_SNAPSHOT: u8 = 3;

pub fn encode_record(record: &JournalRecord) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    match record {
        JournalRecord::Entry(entry) => {
            out.put_u8(RECORD_ENTRY);
            put_entry(&mut out, entry);
        }
        JournalRecord::HardState(state) => {
            out.put_u8(RECORD_HARD_STATE);
            out.put_u64(state.term);
            out.put_u64(state.vote);
            out.put_u64(state.commit);
        }
        JournalRecord::Snapshot(snapshot) => {
            out.put_u8(RECORD_SNAPSHOT);
            put_snapshot(&mut out, snapshot);
        }
    }
    out.freeze()
}

pub fn decode_record(bytes: Bytes) -> Result<JournalRecord> {
    let mut reader = Reader(bytes);
    let record = match reader.u8("record kind")? {
        RECORD_ENTRY => JournalRecord::Entry(read_entry(&mut reader)?),
        RECORD_HARD_STATE => JournalRecord::HardState(HardState {
            term: reader.u64("term")?,
            vote: reader.u64("vote")?,
            commit: reader.u64("commit")?,
            ..HardState::default()
        }),
        RECORD_SNAPSHOT => JournalRecord::Snapshot(read_snapshot(&mut reader)?),
        other => return Err(CodecError::Unknown("journal record", i64::from(other))),
    };
    reader.finish()?;
    Ok(record)
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // protobuf types: built field by field
mod tests {
    use super::*;

    fn sample_message() -> Message {
        let mut entry = Entry::default();
        entry.entry_type = EntryType::EntryConfChangeV2;
        entry.term = 3;
        entry.index = 17;
        entry.data = Bytes::from_static(b"data");
        entry.context = Bytes::from_static(b"ctx");
        let mut message = Message::default();
        message.msg_type = MessageType::MsgAppend;
        message.to = 2;
        message.from = 1;
        message.term = 3;
        message.log_term = 2;
        message.index = 16;
        message.entries = vec![entry.clone(), entry].into();
        message.commit = 15;
        message.reject_hint = 9;
        message.priority = -4;
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 12;
        snapshot.mut_metadata().term = 2;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        snapshot.mut_metadata().mut_conf_state().learners = vec![4];
        snapshot.data = Bytes::from_static(b"image");
        message.set_snapshot(snapshot);
        message
    }

    #[test]
    fn messages_and_records_round_trip() {
        let message = sample_message();
        assert_eq!(decode_message(encode_message(&message)).unwrap(), message);
        let mut state = HardState::default();
        state.term = 7;
        state.vote = 2;
        state.commit = 40;
        for record in [
            JournalRecord::HardState(state),
            JournalRecord::Entry(message.entries[0].clone()),
            JournalRecord::Snapshot(message.get_snapshot().clone()),
        ] {
            assert_eq!(decode_record(encode_record(&record)).unwrap(), record);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let bytes = encode_message(&sample_message());
        for len in 0..bytes.len() {
            assert!(decode_message(bytes.slice(..len)).is_err(), "prefix {len}");
        }
        let mut longer = BytesMut::from(&bytes[..]);
        longer.put_u8(0);
        assert_eq!(
            decode_message(longer.freeze()),
            Err(CodecError::Trailing(1))
        );
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut out = BytesMut::new();
        out.put_u8(MessageType::MsgAppend.value() as u8);
        out.put_bytes(0, 40);
        out.put_u32(u32::MAX);
        assert_eq!(
            decode_message(out.freeze()),
            Err(CodecError::Truncated("entries"))
        );
        let mut out = BytesMut::new();
        out.put_u8(RECORD_SNAPSHOT);
        out.put_u32(u32::MAX);
        assert_eq!(
            decode_record(out.freeze()),
            Err(CodecError::Truncated("voters"))
        );
    }

    #[test]
    fn unknown_kinds_are_named() {
        assert_eq!(
            decode_message(Bytes::from_static(&[200])),
            Err(CodecError::Unknown("message type", 200))
        );
        assert_eq!(
            decode_record(Bytes::from_static(&[9])),
            Err(CodecError::Unknown("journal record", 9))
        );
    }
}
