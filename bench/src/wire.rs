//! Just enough of the Kafka wire protocol, over a plain `TcpStream`, for the places where a
//! librdkafka client is too heavy (a thousand idle connections) or too slow to start
//! (wait-ready polls every 50 ms): ApiVersions v0 and a brokers-only Metadata v1. Both are
//! non-flexible versions every Kafka since 0.10 and Kafka 4.x accept, with a v0 response header.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub const API_VERSIONS_KEY: i16 = 18;
pub const METADATA_KEY: i16 = 3;
pub const INIT_PRODUCER_ID_KEY: i16 = 22;
const CLIENT_ID: &str = "fjord-bench";
/// Largest response accepted. ApiVersions and a Metadata answer without topics are a few KiB;
/// the cap stops a garbled length prefix from allocating gigabytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// One API's supported version range, from ApiVersions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiRange {
    pub key: i16,
    pub min: i16,
    pub max: i16,
}

/// A size-prefixed request with a v1 request header (api key, version, correlation id,
/// client id).
pub fn request(api_key: i16, api_version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(14 + CLIENT_ID.len() + body.len());
    msg.extend_from_slice(&api_key.to_be_bytes());
    msg.extend_from_slice(&api_version.to_be_bytes());
    msg.extend_from_slice(&correlation_id.to_be_bytes());
    // CLIENT_ID is a short constant: its length fits an i16.
    msg.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    msg.extend_from_slice(CLIENT_ID.as_bytes());
    msg.extend_from_slice(body);
    let mut framed = Vec::with_capacity(4 + msg.len());
    framed.extend_from_slice(&(msg.len() as i32).to_be_bytes()); // a few dozen bytes
    framed.extend_from_slice(&msg);
    framed
}

/// Bounds-checked big-endian reads over a response body: a short or garbled answer is an
/// `Err`, never a panic.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("response too short")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A (nullable) string; only its length matters here.
    pub fn skip_string(&mut self) -> Result<(), String> {
        let len = self.i16()?;
        if len > 0 {
            self.take(len as usize)?; // positive i16
        }
        Ok(())
    }
    pub fn array_len(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| format!("bad array length {n}"))
    }
}

/// The ranges of an ApiVersions v0 response body; a non-zero error code is an `Err`.
pub fn parse_api_versions_v0(body: &[u8]) -> Result<Vec<ApiRange>, String> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    if error != 0 {
        return Err(format!("ApiVersions error code {error}"));
    }
    let n = r.array_len()?;
    // Each entry is 6 bytes; check before allocating.
    if n > body.len() / 6 {
        return Err(format!("ApiVersions claims {n} entries in {} bytes", body.len()));
    }
    (0..n)
        .map(|_| {
            Ok(ApiRange {
                key: r.i16()?,
                min: r.i16()?,
                max: r.i16()?,
            })
        })
        .collect()
}

/// Number of brokers in a Metadata v1 response body, after parsing every broker entry.
pub fn parse_metadata_v1_brokers(body: &[u8]) -> Result<usize, String> {
    let mut r = Reader::new(body);
    let n = r.array_len()?;
    for _ in 0..n {
        r.i32()?; // node id
        r.skip_string()?; // host
        r.i32()?; // port
        r.skip_string()?; // rack
    }
    r.i32()?; // controller id
    Ok(n)
}

/// Reads one size-prefixed response of at most `max_bytes`: its correlation id and the body
/// after the v0 response header.
pub fn read_response(stream: &mut TcpStream, max_bytes: usize) -> Result<(i32, Vec<u8>), String> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(|e| format!("read: {e}"))?;
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| (4..=max_bytes).contains(&l))
        .ok_or(format!("bad response length {len}"))?;
    let mut resp = vec![0u8; len];
    stream.read_exact(&mut resp).map_err(|e| format!("read: {e}"))?;
    let correlation_id = i32::from_be_bytes([resp[0], resp[1], resp[2], resp[3]]); // len >= 4 checked
    resp.drain(..4);
    Ok((correlation_id, resp))
}

/// One raw connection to a broker.
pub struct Conn {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Conn {
    /// Connects to the first address `addr` resolves to, with `timeout` for the connect and
    /// for every later read and write.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn, String> {
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| format!("resolve {addr}: {e}"))?
            .next()
            .ok_or(format!("resolve {addr}: no address"))?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            next_correlation_id: 1,
        })
    }

    /// Sends one request and returns the response body after the v0 response header.
    pub fn call(&mut self, api_key: i16, api_version: i16, body: &[u8]) -> Result<Vec<u8>, String> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        self.stream
            .write_all(&request(api_key, api_version, correlation_id, body))
            .map_err(|e| format!("send: {e}"))?;
        let (got, resp) = read_response(&mut self.stream, MAX_RESPONSE_BYTES)?;
        if got != correlation_id {
            return Err(format!("correlation id {got}, expected {correlation_id}"));
        }
        Ok(resp)
    }

    pub fn api_versions(&mut self) -> Result<Vec<ApiRange>, String> {
        parse_api_versions_v0(&self.call(API_VERSIONS_KEY, 0, &[])?)
    }

    /// Metadata v1 for no topics (an empty array; null would mean all): the broker list only.
    pub fn metadata_brokers(&mut self) -> Result<usize, String> {
        parse_metadata_v1_brokers(&self.call(METADATA_KEY, 1, &0i32.to_be_bytes())?)
    }
}

/// The APIs the broker at `bootstrap` advertises.
pub fn advertised_apis(bootstrap: &str) -> Result<Vec<ApiRange>, String> {
    Conn::connect(bootstrap, Duration::from_secs(5))?.api_versions()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_request() {
        let f = request(18, 0, 7, &[]);
        assert_eq!(&f[..4], &((f.len() - 4) as i32).to_be_bytes());
        assert_eq!(&f[4..6], &18i16.to_be_bytes());
        assert_eq!(&f[8..12], &7i32.to_be_bytes());
        assert_eq!(&f[14..], CLIENT_ID.as_bytes());
    }

    #[test]
    fn parses_api_versions() {
        let mut b = vec![0, 0, 0, 0, 0, 2];
        for (k, lo, hi) in [(0i16, 0i16, 11i16), (22, 0, 5)] {
            for v in [k, lo, hi] {
                b.extend_from_slice(&v.to_be_bytes());
            }
        }
        let r = parse_api_versions_v0(&b).expect("valid");
        assert_eq!(
            r[1],
            ApiRange {
                key: 22,
                min: 0,
                max: 5
            }
        );
        assert!(parse_api_versions_v0(&b[..b.len() - 1]).is_err(), "truncated");
        assert!(parse_api_versions_v0(&[0, 35, 0, 0, 0, 0]).is_err(), "error code");
        assert!(
            parse_api_versions_v0(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err(),
            "huge count"
        );
    }

    #[test]
    fn parses_metadata_brokers() {
        let mut b = 1i32.to_be_bytes().to_vec();
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&9i16.to_be_bytes());
        b.extend_from_slice(b"127.0.0.1");
        b.extend_from_slice(&9092i32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes()); // null rack
        b.extend_from_slice(&1i32.to_be_bytes()); // controller
        b.extend_from_slice(&0i32.to_be_bytes()); // no topics
        assert_eq!(parse_metadata_v1_brokers(&b), Ok(1));
        assert!(parse_metadata_v1_brokers(&b[..10]).is_err());
        assert!(parse_metadata_v1_brokers(&(-5i32).to_be_bytes()).is_err());
    }
}
