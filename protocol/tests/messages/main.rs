//! Every request and response kafka-protocol has, at every version it has, built from what
//! Kafka's own schemas say about each field (`generated.rs`, written by `generate.py`):
//!
//! - a response with every field set encodes exactly at the versions that lack no field the
//!   schema calls non-ignorable (Kafka's Java code throws there, and drops ignorable fields
//!   silently), and what it encodes decodes back with every field the version has;
//! - any value whose fields are random where the version has them and default elsewhere
//!   decodes back to itself (`decode(encode(x, v), v) == x`).
//!
//! The broker's own test (`handler::tests`) checks that every version it serves is one of
//! those tested here.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, BrokerId, GroupId, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::{Decodable, Encodable, Message, Request, StrBytes, VersionRange};
use proptest::collection::vec;
use proptest::prelude::any;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

/// `Gen` for each struct of the schemas: sets each field that the version being built has.
macro_rules! structs {
    ($($m:ident::$s:ident { $($f:ident $v:literal $(/ $n:literal)?,)* })*) => {$(
        impl Gen for kafka_protocol::messages::$m::$s {
            #[allow(unused_mut, unused_variables)]
            fn gen(g: &mut G) -> Self {
                let mut x = Self::default();
                $(field!(g, x.$f, $v $(, $n)?);)*
                x
            }
        }
    )*};
}

macro_rules! field {
    ($g:ident, $slot:expr, $v:literal) => {
        $g.set(&mut $slot, $v)
    };
    ($g:ident, $slot:expr, $v:literal, $n:literal) => {
        $g.set_nullable(&mut $slot, $v, $n)
    };
}

mod generated;

/// Whether a schema's version spec ("0+", "1-3", "4", "none") includes `v`.
fn in_spec(spec: &str, v: i16) -> bool {
    let bound = |s: &str| s.parse::<i16>().unwrap_or_else(|_| panic!("version spec {spec:?}"));
    if spec == "none" {
        return false;
    }
    if let Some(lo) = spec.strip_suffix('+') {
        return v >= bound(lo);
    }
    match spec.split_once('-') {
        Some((lo, hi)) => (bound(lo)..=bound(hi)).contains(&v),
        None => v == bound(spec),
    }
}

/// Builds values: either every field set to a fixed value that differs from its default, or
/// fields taken from random bytes (zeros once they run out, which shrinks well).
pub struct G<'a> {
    /// Fields this version lacks stay default; `None` sets them all.
    version: Option<i16>,
    /// `None` gives the fixed values.
    entropy: Option<&'a [u8]>,
    /// Asks for the second fixed value, for a field whose default is the first.
    alt: bool,
}

impl<'a> G<'a> {
    fn populated(version: Option<i16>) -> G<'static> {
        G {
            version,
            entropy: None,
            alt: false,
        }
    }

    fn random(version: i16, entropy: &'a [u8]) -> G<'a> {
        G {
            version: Some(version),
            entropy: Some(entropy),
            alt: false,
        }
    }

    /// Eight random bytes, `None` when building fixed values.
    fn word(&mut self) -> Option<u64> {
        let bytes = self.entropy.as_mut()?;
        let n = bytes.len().min(8);
        let mut word = [0; 8];
        word[..n].copy_from_slice(&bytes[..n]);
        *bytes = &bytes[n..];
        Some(u64::from_le_bytes(word))
    }

    fn has(&self, spec: &str) -> bool {
        self.version.is_none_or(|v| in_spec(spec, v))
    }

    /// A new value; a fixed one never equals `default`.
    fn value<T: Gen + PartialEq>(&mut self, default: Option<&T>) -> T {
        let value = T::gen(self);
        if self.entropy.is_none() && default == Some(&value) {
            self.alt = true;
            let value = T::gen(self);
            self.alt = false;
            return value;
        }
        value
    }

    fn set<T: Gen + PartialEq>(&mut self, slot: &mut T, versions: &str) {
        if self.has(versions) {
            *slot = self.value(Some(slot));
        }
    }

    fn set_nullable<T: Gen + PartialEq>(&mut self, slot: &mut Option<T>, versions: &str, nullable: &str) {
        if !self.has(versions) {
            return;
        }
        if let (Some(v), Some(r)) = (self.version, self.word()) {
            if in_spec(nullable, v) && r % 4 == 0 {
                *slot = None;
                return;
            }
        }
        *slot = Some(self.value(slot.as_ref()));
    }
}

pub trait Gen: Sized {
    fn gen(g: &mut G) -> Self;
}

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl Gen for $t {
            fn gen(g: &mut G) -> Self {
                g.word().map_or(7 + g.alt as $t, |r| r as $t)
            }
        }
    )*};
}
ints!(i8, i16, i32, i64, u16);

impl Gen for bool {
    fn gen(g: &mut G) -> Self {
        g.word().map_or(!g.alt, |r| r & 1 == 1)
    }
}

impl Gen for f64 {
    fn gen(g: &mut G) -> Self {
        g.word().map_or(1.5 + g.alt as u8 as f64, |r| (r % 4096) as f64 / 8.0)
    }
}

impl Gen for Uuid {
    fn gen(g: &mut G) -> Self {
        match (g.word(), g.word()) {
            (Some(hi), Some(lo)) => Uuid::from_u64_pair(hi, lo),
            _ => Uuid::from_u128(1 + g.alt as u128),
        }
    }
}

impl Gen for StrBytes {
    fn gen(g: &mut G) -> Self {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._-";
        let s = match g.word() {
            Some(len) => (0..len % 7)
                .map(|_| CHARS[(g.word().unwrap_or(0) % CHARS.len() as u64) as usize] as char)
                .collect(),
            None => if g.alt { "y" } else { "x" }.to_string(),
        };
        StrBytes::from_string(s)
    }
}

impl Gen for Bytes {
    fn gen(g: &mut G) -> Self {
        match g.word() {
            Some(len) => (0..len % 7).map(|_| g.word().unwrap_or(0) as u8).collect(),
            None => Bytes::from_static(if g.alt { b"\x03" } else { b"\x01\x02" }),
        }
    }
}

macro_rules! newtypes {
    ($($t:ident),*) => {$(
        impl Gen for $t {
            fn gen(g: &mut G) -> Self {
                $t(Gen::gen(g))
            }
        }
    )*};
}
newtypes!(BrokerId, GroupId, ProducerId, TopicName, TransactionalId);

impl<T: Gen> Gen for Vec<T> {
    fn gen(g: &mut G) -> Self {
        let len = g.word().map_or(1, |r| r % 3);
        (0..len).map(|_| T::gen(g)).collect()
    }
}

/// One message type, at each of its versions.
pub struct Case {
    name: &'static str,
    versions: VersionRange,
    populated: fn(i16, Option<&str>) -> Result<(), String>,
    round_trip: fn(i16, &[u8]) -> Result<(), String>,
}

/// An API: its request, its response, and where a populated response must not encode.
pub struct Api {
    key: i16,
    request: Case,
    response: Case,
    /// (first version, last version, a non-ignorable field those versions lack)
    lacks: &'static [(i16, i16, &'static str)],
}

trait Msg: Message + Encodable + Decodable + Gen + PartialEq + Debug {}
impl<T: Message + Encodable + Decodable + Gen + PartialEq + Debug> Msg for T {}

fn case<T: Msg>() -> Case {
    let name = std::any::type_name::<T>();
    Case {
        name: name.rsplit("::").next().unwrap_or(name),
        versions: T::VERSIONS,
        populated: populated::<T>,
        round_trip: round_trip::<T>,
    }
}

fn api<R: Request + Msg>(lacks: &'static [(i16, i16, &'static str)]) -> Api
where
    R::Response: Gen + PartialEq + Debug,
{
    Api {
        key: R::KEY,
        request: case::<R>(),
        response: case::<R::Response>(),
        lacks,
    }
}

/// Encodes and decodes `value` at `version`; the decoded value, or what went wrong.
fn encode_decode<T: Msg>(value: &T, version: i16) -> Result<T, String> {
    let mut buf = BytesMut::new();
    value
        .encode(&mut buf, version)
        .map_err(|e| format!("does not encode: {e:#}"))?;
    let size = value
        .compute_size(version)
        .map_err(|e| format!("compute_size fails: {e:#}"))?;
    if size != buf.len() {
        return Err(format!("compute_size says {size} bytes, encode wrote {}", buf.len()));
    }
    let mut bytes = buf.freeze();
    let decoded = T::decode(&mut bytes, version).map_err(|e| format!("does not decode: {e:#}"))?;
    if !bytes.is_empty() {
        return Err(format!("{} bytes left after decoding", bytes.len()));
    }
    Ok(decoded)
}

fn populated<T: Msg>(version: i16, lacks: Option<&str>) -> Result<(), String> {
    let value = T::gen(&mut G::populated(None));
    match (encode_decode(&value, version), lacks) {
        (Err(_), Some(_)) => {
            if value.compute_size(version).is_ok() {
                return Err("compute_size accepts what encode refuses".into());
            }
            Ok(())
        }
        (Err(e), None) => Err(e),
        (Ok(_), Some(field)) => Err(format!(
            "encodes, though the version lacks {field}, which is not ignorable"
        )),
        (Ok(decoded), None) => {
            let expected = T::gen(&mut G::populated(Some(version)));
            if decoded != expected {
                return Err(format!("decodes to {decoded:?}, not {expected:?}"));
            }
            Ok(())
        }
    }
}

fn round_trip<T: Msg>(version: i16, entropy: &[u8]) -> Result<(), String> {
    let value = T::gen(&mut G::random(version, entropy));
    let decoded = encode_decode(&value, version)?;
    if decoded != value {
        return Err(format!("decodes to {decoded:?}, not {value:?}"));
    }
    Ok(())
}

fn versions(range: VersionRange) -> impl Iterator<Item = i16> {
    range.min..=range.max
}

#[test]
fn every_api_is_listed() {
    let listed: Vec<i16> = generated::apis().iter().map(|a| a.key).collect();
    let known: Vec<i16> = (0..=i16::MAX).filter(|k| ApiKey::try_from(*k).is_ok()).collect();
    assert_eq!(listed, known, "APIs in generated.rs and in kafka-protocol's ApiKey");
}

#[test]
fn populated_responses_encode_exactly_where_no_non_ignorable_field_is_lacking() {
    let (mut checked, mut problems) = (0, Vec::new());
    for api in generated::apis() {
        for v in versions(api.response.versions) {
            let lacks = api
                .lacks
                .iter()
                .find(|(lo, hi, _)| (*lo..=*hi).contains(&v))
                .map(|l| l.2);
            if let Err(e) = (api.response.populated)(v, lacks) {
                problems.push(format!("{} v{v}: {e}", api.response.name));
            }
            checked += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {checked} response versions:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_message_round_trips_at_every_version() {
    // 256 values per message version unless PROPTEST_CASES says otherwise: about two seconds.
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let (mut checked, mut problems) = (0, Vec::new());
    for api in generated::apis() {
        for case in [&api.request, &api.response] {
            for v in versions(case.versions) {
                let mut runner = TestRunner::new(config.clone());
                let result = runner.run(&vec(any::<u8>(), 0..1024), |entropy| {
                    (case.round_trip)(v, &entropy).map_err(TestCaseError::fail)
                });
                if let Err(e) = result {
                    problems.push(format!("{} v{v}: {e}", case.name));
                }
                checked += 1;
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {checked} message versions:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
