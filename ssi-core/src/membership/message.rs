//! The membership datagram: one versioned header, then piggy-backed items (membership updates
//! first, then probe-data items) up to the end, never more than [`MAX_PACKET`] bytes.
//!
//! ```text
//! [version u8 = 1][postcard Header][postcard Item]*      Item = Update(..) | Info(..)
//! ```
//!
//! Every part is postcard, so enums carry a varint tag: an unknown message kind, item kind or
//! state is refused like an unknown version. A datagram is decoded completely before anything
//! of it is applied, so a malformed one changes nothing; probe-data bodies are checked by the
//! core before it applies anything, and only those it would keep (most items repeat what a
//! member knows already).

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;

use crate::node::{NodeId, NodeIdentity};

use super::MAX_PACKET;

/// Version of the membership datagram format; a datagram of another version is refused.
pub const VERSION: u8 = 1;

/// Most members that can back one suspicion in a single update (Lifeguard needs a few
/// independent confirmations, not all of them).
pub const MAX_ACCUSERS: usize = 3;

/// Largest encoded probe-data body accepted.
pub const MAX_INFO_BODY: usize = 250;

/// What a datagram is for; every datagram also carries piggy-backed items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Direct probe; answered by `Ack` with the same `seq`.
    Ping {
        /// Probe number chosen by the prober.
        seq: u32,
    },
    /// Answer to a `Ping`.
    Ack {
        /// The probe's number.
        seq: u32,
    },
    /// Please probe `target` for me and tell me (`IndirectAck`) or tell me you could not (`Nack`).
    PingReq {
        /// The requester's probe number.
        seq: u32,
        /// Whom to probe.
        target: NodeIdentity,
    },
    /// `target` answered the probe relayed on behalf of the requester's probe `seq`.
    IndirectAck {
        /// The requester's probe number.
        seq: u32,
        /// The member that answered.
        target: NodeId,
    },
    /// `target` did not answer the relayed probe in time (Lifeguard: tells the requester that
    /// its own network works, so a failed probe is the target's fault).
    Nack {
        /// The requester's probe number.
        seq: u32,
        /// The member that stayed silent.
        target: NodeId,
    },
    /// Let me in; answered by one or more `Feed` datagrams holding the full state.
    Announce,
    /// A part of the full state sent to a node that announced itself.
    Feed,
    /// Nothing but piggy-backed items.
    Gossip,
}

/// What every datagram starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The sender.
    pub from: NodeIdentity,
    /// The sender's current incarnation (receiving it is as good as an `Alive` update).
    pub incarnation: u16,
    /// What the datagram is for.
    pub kind: Kind,
}

/// What one member believes of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum State {
    /// Answers probes.
    Alive,
    /// Missed a probe; declared dead unless it refutes in time.
    Suspect,
    /// Declared dead; final for this generation.
    Dead,
    /// Left on purpose; final for this generation.
    Left,
}

impl State {
    /// Alive or suspect.
    pub fn is_active(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }
}

/// The members that independently suspected a member (at most [`MAX_ACCUSERS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accusers {
    len: u8,
    ids: [NodeId; MAX_ACCUSERS],
}

impl Default for Accusers {
    fn default() -> Self {
        Accusers {
            len: 0,
            ids: [NodeId(0); MAX_ACCUSERS],
        }
    }
}

impl Accusers {
    /// Just `id`.
    pub fn one(id: NodeId) -> Self {
        let mut a = Accusers::default();
        a.add(id);
        a
    }

    /// The accusers, in the order they were learnt.
    pub fn as_slice(&self) -> &[NodeId] {
        &self.ids[..usize::from(self.len)]
    }

    /// Number of accusers.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `id`; false if it was there already or there is no room.
    pub fn add(&mut self, id: NodeId) -> bool {
        if self.as_slice().contains(&id) || usize::from(self.len) == MAX_ACCUSERS {
            return false;
        }
        self.ids[usize::from(self.len)] = id;
        self.len += 1;
        true
    }

    /// Adds every accuser of `other`; true if any was new.
    pub fn merge(&mut self, other: &Accusers) -> bool {
        let mut added = false;
        for &id in other.as_slice() {
            added |= self.add(id);
        }
        added
    }
}

impl Serialize for Accusers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for id in self.as_slice() {
            seq.serialize_element(id)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Accusers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Accusers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "at most {MAX_ACCUSERS} node ids")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Accusers, A::Error> {
                let mut a = Accusers::default();
                while let Some(id) = seq.next_element::<NodeId>()? {
                    if usize::from(a.len) == MAX_ACCUSERS {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_ACCUSERS} accusers"
                        )));
                    }
                    a.ids[usize::from(a.len)] = id;
                    a.len += 1;
                }
                Ok(a)
            }
        }
        d.deserialize_seq(V)
    }
}

/// A membership update: `identity` is in `state` at `incarnation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The member.
    pub identity: NodeIdentity,
    /// Its incarnation as the sender knows it.
    pub incarnation: u16,
    /// Its state.
    pub state: State,
    /// Who suspected it (only for `Suspect`; empty otherwise).
    pub accusers: Accusers,
}

/// One member's probe data, as published by that member; `body` is an encoded [`InfoBody`].
///
/// It names the member fully (id, address, generation), so that it also tells a member that
/// missed this one's arrival about it: periodic publications double as anti-entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoItem<'a> {
    /// The member.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// Its generation when it published.
    pub gen: u64,
    /// Publication number, growing within one generation.
    pub seq: u32,
    /// The encoded [`InfoBody`], kept and forwarded as received.
    #[serde(serialize_with = "as_bytes")]
    pub body: &'a [u8],
}

/// Serializes a byte slice in one piece (serde's default goes byte by byte; postcard writes
/// the same bytes either way).
fn as_bytes<S: Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(b)
}

/// One piggy-backed item.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
enum Item<'a> {
    Update(Update),
    #[serde(borrow)]
    Info(InfoItem<'a>),
}

/// [`Item`] by reference, to encode without copying.
#[derive(Serialize)]
enum ItemRef<'r, 'a> {
    Update(&'r Update),
    Info(&'r InfoItem<'a>),
}

/// Name and probe figures of a member, compact: memory in KiB (what /proc/meminfo gives) and
/// load averages in hundredths (what /proc/loadavg gives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoBody<'a> {
    /// Node name.
    pub name: &'a str,
    /// Online CPUs.
    pub cpus: u32,
    /// Total memory, KiB.
    pub mem_total_kib: u64,
    /// Available memory, KiB.
    pub mem_free_kib: u64,
    /// 1, 5 and 15-minute load averages, hundredths.
    pub load_centi: [u32; 3],
    /// Processes hosted for the cluster.
    pub ssi_procs: u32,
}

/// A decoded datagram; info bodies borrow from the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The header.
    pub header: Header,
    /// Membership updates.
    pub updates: Vec<Update>,
    /// Probe-data items (bodies not checked yet: see [`check_info_body`]).
    pub infos: Vec<InfoItem<'a>>,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Nothing at all.
    #[error("empty membership datagram")]
    Empty,
    /// Longer than any sender may send.
    #[error("membership datagram of {0} bytes exceeds {MAX_PACKET}")]
    TooLong(usize),
    /// Another format version.
    #[error("membership datagram version {0} unknown (this node speaks {VERSION})")]
    Version(u8),
    /// A part does not decode.
    #[error("membership datagram: {part}: {reason}")]
    Malformed {
        /// Which part.
        part: &'static str,
        /// What postcard said.
        reason: String,
    },
}

fn malformed(part: &'static str) -> impl Fn(postcard::Error) -> DecodeError {
    move |e| DecodeError::Malformed {
        part,
        reason: e.to_string(),
    }
}

/// Decodes a whole datagram.
pub fn decode(data: &[u8]) -> Result<Packet<'_>, DecodeError> {
    if data.len() > MAX_PACKET {
        return Err(DecodeError::TooLong(data.len()));
    }
    let (&version, rest) = data.split_first().ok_or(DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let (header, mut rest) =
        postcard::take_from_bytes::<Header>(rest).map_err(malformed("header"))?;
    let mut updates = Vec::new();
    let mut infos = Vec::new();
    while !rest.is_empty() {
        let (item, r) = postcard::take_from_bytes::<Item<'_>>(rest).map_err(malformed("item"))?;
        match item {
            Item::Update(u) => updates.push(u),
            Item::Info(i) => infos.push(i),
        }
        rest = r;
    }
    Ok(Packet {
        header,
        updates,
        infos,
    })
}

/// Checks that `body` is one whole [`InfoBody`] of acceptable size.
pub fn check_info_body(body: &[u8]) -> Result<InfoBody<'_>, DecodeError> {
    if body.len() > MAX_INFO_BODY {
        return Err(DecodeError::Malformed {
            part: "info body",
            reason: format!("{} bytes, more than {MAX_INFO_BODY}", body.len()),
        });
    }
    let (info, rest) =
        postcard::take_from_bytes::<InfoBody<'_>>(body).map_err(malformed("info body"))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed {
            part: "info body",
            reason: format!("{} bytes after its end", rest.len()),
        });
    }
    Ok(info)
}

/// Builds one datagram in place, item by item, refusing any item that would make it exceed
/// [`MAX_PACKET`].
#[derive(Debug)]
pub struct Writer {
    buf: [u8; MAX_PACKET],
    len: usize,
    items: u32,
}

impl Writer {
    /// A datagram with `header` and no items yet.
    pub fn new(header: &Header) -> Self {
        let mut w = Writer {
            buf: [0; MAX_PACKET],
            len: 1,
            items: 0,
        };
        w.buf[0] = VERSION;
        // A header is at most ~100 bytes (two identities with IPv6 addresses), far below
        // MAX_PACKET; a unit test checks it.
        if let Ok(b) = postcard::to_slice(header, &mut w.buf[1..]) {
            w.len += b.len();
        }
        w
    }

    fn push<T: Serialize>(&mut self, item: &T) -> bool {
        match postcard::to_slice(item, &mut self.buf[self.len..]) {
            Ok(b) => {
                self.len += b.len();
                self.items += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes still free.
    pub fn room(&self) -> usize {
        MAX_PACKET - self.len
    }

    /// Adds `u` if it fits; false otherwise. Updates go before probe-data items.
    pub fn push_update(&mut self, u: &Update) -> bool {
        self.push(&ItemRef::Update(u))
    }

    /// Adds `item` if it fits; false otherwise.
    pub fn push_info(&mut self, item: &InfoItem<'_>) -> bool {
        self.push(&ItemRef::Info(item))
    }

    /// Number of items added.
    pub fn items(&self) -> u32 {
        self.items
    }

    /// The datagram.
    pub fn finish(self) -> Vec<u8> {
        self.buf[..self.len].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, SocketAddrV6};

    fn ident(id: u16) -> NodeIdentity {
        NodeIdentity {
            id: NodeId(id),
            addr: SocketAddr::from(([10, 77, 0, 1], 7700)),
            gen: 1_764_000_000_000,
        }
    }

    fn v6(id: u16) -> NodeIdentity {
        NodeIdentity {
            id: NodeId(id),
            addr: SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                65535,
                u32::MAX,
                u32::MAX,
            )),
            gen: u64::MAX,
        }
    }

    fn update(id: u16, state: State) -> Update {
        Update {
            identity: ident(id),
            incarnation: 7,
            state,
            accusers: if state == State::Suspect {
                Accusers::one(NodeId(1))
            } else {
                Accusers::default()
            },
        }
    }

    fn body() -> Vec<u8> {
        postcard::to_stdvec(&InfoBody {
            name: "n1",
            cpus: 4,
            mem_total_kib: 16 << 20,
            mem_free_kib: 8 << 20,
            load_centi: [53, 20, 0],
            ssi_procs: 3,
        })
        .expect("encode")
    }

    #[test]
    fn a_datagram_round_trips() {
        let header = Header {
            from: ident(1),
            incarnation: 3,
            kind: Kind::PingReq {
                seq: 9,
                target: ident(2),
            },
        };
        let mut w = Writer::new(&header);
        assert!(w.push_update(&update(3, State::Suspect)));
        assert!(w.push_update(&update(4, State::Left)));
        let b = body();
        let item = InfoItem {
            id: NodeId(3),
            addr: ident(3).addr,
            gen: 1,
            seq: 2,
            body: &b,
        };
        assert!(w.push_info(&item));
        let data = w.finish();
        let p = decode(&data).expect("decodes");
        assert_eq!(p.header, header);
        assert_eq!(
            p.updates,
            vec![update(3, State::Suspect), update(4, State::Left)]
        );
        assert_eq!(p.infos, vec![item]);
    }

    #[test]
    fn the_largest_header_fits_the_writer_buffer() {
        let header = Header {
            from: v6(u16::MAX),
            incarnation: u16::MAX,
            kind: Kind::PingReq {
                seq: u32::MAX,
                target: v6(u16::MAX),
            },
        };
        let bytes = postcard::to_stdvec(&header).expect("encode");
        assert!(bytes.len() < 256, "{} bytes", bytes.len());
        let w = Writer::new(&header);
        assert_eq!(w.len, bytes.len() + 1);
    }

    #[test]
    fn a_full_datagram_never_exceeds_max_packet() {
        let mut w = Writer::new(&Header {
            from: v6(1),
            incarnation: u16::MAX,
            kind: Kind::Gossip,
        });
        let mut u = update(9, State::Suspect);
        u.identity = v6(9);
        while w.push_update(&u) {}
        let b = body();
        let item = InfoItem {
            id: NodeId(u16::MAX),
            addr: v6(1).addr,
            gen: u64::MAX,
            seq: u32::MAX,
            body: &b,
        };
        while w.push_info(&item) {}
        assert!(w.items() > 20);
        let data = w.finish();
        assert!(data.len() <= MAX_PACKET, "{} bytes", data.len());
        assert!(
            data.len() > MAX_PACKET - 60,
            "room left unused: {}",
            data.len()
        );
        decode(&data).expect("decodes");
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut data = Writer::new(&Header {
            from: ident(1),
            incarnation: 0,
            kind: Kind::Gossip,
        })
        .finish();
        data[0] = 2;
        assert_eq!(decode(&data), Err(DecodeError::Version(2)));
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let mut data = Writer::new(&Header {
            from: ident(1),
            incarnation: 0,
            kind: Kind::Gossip,
        })
        .finish();
        // Without items, the kind tag is the last byte.
        *data.last_mut().expect("byte") = 99;
        let err = decode(&data).expect_err("unknown kind");
        assert!(err.to_string().contains("header"), "{err}");
    }

    #[test]
    fn unknown_items_and_truncation_are_refused() {
        let mut w = Writer::new(&Header {
            from: ident(1),
            incarnation: 0,
            kind: Kind::Ack { seq: 1 },
        });
        assert!(w.push_update(&update(2, State::Alive)));
        let data = w.finish();
        let mut longer = data.clone();
        longer.push(7);
        let err = decode(&longer).expect_err("unknown item kind");
        assert!(err.to_string().contains("item"), "{err}");
        // A cut inside the header or an item is refused; at the item boundary the datagram
        // is whole, only shorter.
        let header_end = data.len()
            - postcard::to_stdvec(&update(2, State::Alive))
                .expect("e")
                .len()
            - 1;
        for cut in (0..data.len()).filter(|&c| c != header_end) {
            assert!(decode(&data[..cut]).is_err(), "cut at {cut} accepted");
        }
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn a_bad_info_body_is_refused() {
        assert!(check_info_body(&body()).is_ok());
        let err = check_info_body(&[0xff; 5]).expect_err("garbage");
        assert!(err.to_string().contains("info body"), "{err}");
        let mut longer = body();
        longer.push(0);
        assert!(check_info_body(&longer).is_err());
        assert!(check_info_body(&[0; MAX_INFO_BODY + 1]).is_err());
    }

    #[test]
    fn accusers_are_a_small_set() {
        let mut a = Accusers::one(NodeId(1));
        assert!(!a.add(NodeId(1)));
        assert!(a.add(NodeId(2)));
        assert!(a.merge(&Accusers::one(NodeId(3))));
        assert!(!a.add(NodeId(4)), "full");
        assert_eq!(a.as_slice(), &[NodeId(1), NodeId(2), NodeId(3)]);
        let four =
            postcard::to_stdvec(&[NodeId(1), NodeId(2), NodeId(3), NodeId(4)]).expect("encode");
        // A sequence of four ids (its length prefix included) does not decode as accusers.
        let mut seq = vec![4u8];
        seq.extend_from_slice(&four);
        assert!(postcard::from_bytes::<Accusers>(&seq).is_err());
    }
}
