//! DNS messages: building a query and reading the records a lookup needs from the response.
//! Encoding and decoding is done by the `simple-dns` crate; this module only decides which
//! records answer the question.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QTYPE, Question, RCODE, TYPE};

/// Record types a lookup requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    A,
    Aaaa,
    Ptr,
}

impl RecordType {
    fn wire(self) -> TYPE {
        match self {
            RecordType::A => TYPE::A,
            RecordType::Aaaa => TYPE::AAAA,
            RecordType::Ptr => TYPE::PTR,
        }
    }
}

/// A name that cannot be put into a query (empty label, label over 63 bytes, bad escape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidName;

/// Encodes a recursive query for `name`'s records of type `qtype` and class `class` (1 is IN),
/// with message id `id`.
pub fn build_query(id: u16, name: &str, class: u16, qtype: u16) -> Result<Vec<u8>, InvalidName> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(InvalidName);
    }
    let qname = Name::new(name).map_err(|_| InvalidName)?;
    let qtype = QTYPE::try_from(qtype).map_err(|_| InvalidName)?;
    let class = CLASS::try_from(class).map_err(|_| InvalidName)?;
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    packet
        .questions
        .push(Question::new(qname, qtype, class.into(), false));
    packet.build_bytes_vec().map_err(|_| InvalidName)
}

/// Encodes a recursive IN query for `name`'s records of type `kind`.
pub fn build_lookup(id: u16, name: &str, kind: RecordType) -> Result<Vec<u8>, InvalidName> {
    build_query(id, name, CLASS::IN as u16, kind.wire().into())
}

/// The response code of a response, with its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The name exists; the records of the requested type, possibly none (NODATA).
    Records(Records),
    /// The name does not exist (NXDOMAIN).
    NoSuchName,
    /// The server failed (SERVFAIL); another server or a later try may succeed.
    ServerFailure,
    /// The server refused or did not understand the query.
    Refused,
}

/// The answer records that belong to the question, after following CNAMEs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// The name the records belong to: the query name, or the end of its CNAME chain.
    pub canonical: String,
    /// The names the CNAME chain passed through, starting with the query name.
    pub aliases: Vec<String>,
    pub addrs: Vec<IpAddr>,
    /// PTR targets.
    pub names: Vec<String>,
}

/// A reason a response was not taken as the response to the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// Not a DNS message.
    Malformed,
    /// A message for another query (id or question differ), which the caller drops.
    Mismatch,
}

/// Returns the message id of a response, or `None` when it is too short to have one.
pub fn message_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// Returns true when the response has the TC (truncated) bit set.
pub fn is_truncated(bytes: &[u8]) -> bool {
    bytes.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

/// Reads the response to the query `(id, name, kind)`.
pub fn read_response(
    bytes: &[u8],
    id: u16,
    name: &str,
    kind: RecordType,
) -> Result<Outcome, ResponseError> {
    let packet = Packet::parse(bytes).map_err(|_| ResponseError::Malformed)?;
    if packet.id() != id || !packet.has_flags(PacketFlag::RESPONSE) {
        return Err(ResponseError::Mismatch);
    }
    let asked = name.strip_suffix('.').unwrap_or(name);
    let question_matches = packet.questions.iter().any(|q| {
        q.qtype == QTYPE::TYPE(kind.wire()) && q.qname.to_string().eq_ignore_ascii_case(asked)
    });
    if !question_matches {
        return Err(ResponseError::Mismatch);
    }
    Ok(match packet.rcode() {
        RCODE::NoError => Outcome::Records(collect_records(&packet, asked, kind)),
        RCODE::NameError => Outcome::NoSuchName,
        RCODE::ServerFailure => Outcome::ServerFailure,
        _ => Outcome::Refused,
    })
}

/// Follows the CNAME chain from `asked` through the answer section and gathers the records
/// of type `kind` owned by its end.
fn collect_records(packet: &Packet, asked: &str, kind: RecordType) -> Records {
    let mut records = Records {
        canonical: asked.to_owned(),
        ..Records::default()
    };
    // Each CNAME moves the chain one step; the bound stops a loop of CNAMEs.
    for _ in 0..packet.answers.len() {
        let next = packet.answers.iter().find_map(|rr| match &rr.rdata {
            RData::CNAME(target) if owner_is(&rr.name, &records.canonical) => {
                Some(target.0.to_string())
            }
            _ => None,
        });
        let Some(next) = next else { break };
        records
            .aliases
            .push(std::mem::replace(&mut records.canonical, next));
    }
    for rr in &packet.answers {
        if !owner_is(&rr.name, &records.canonical) {
            continue;
        }
        match (&rr.rdata, kind) {
            (RData::A(a), RecordType::A) => records.addrs.push(Ipv4Addr::from(a.address).into()),
            (RData::AAAA(aaaa), RecordType::Aaaa) => {
                records.addrs.push(Ipv6Addr::from(aaaa.address).into())
            }
            (RData::PTR(target), RecordType::Ptr) => records.names.push(target.0.to_string()),
            _ => {}
        }
    }
    records
}

fn owner_is(owner: &Name, name: &str) -> bool {
    owner.to_string().eq_ignore_ascii_case(name)
}

/// Returns the name a PTR query for `addr` requests (`in-addr.arpa` or `ip6.arpa`).
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(ip) => {
            let mut name = String::with_capacity(72);
            for byte in ip.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::ResourceRecord;
    use simple_dns::rdata::{A, CNAME};

    fn response(id: u16, name: &str, rcode: RCODE, answers: Vec<ResourceRecord>) -> Vec<u8> {
        let mut packet = Packet::new_reply(id);
        *packet.rcode_mut() = rcode;
        packet.questions.push(Question::new(
            Name::new(name).unwrap(),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        packet.answers = answers;
        packet.build_bytes_vec().unwrap()
    }

    #[test]
    fn query_encodes_question() {
        let bytes = build_lookup(0x1234, "web.netcon.test.", RecordType::Aaaa).unwrap();
        let packet = Packet::parse(&bytes).unwrap();
        assert_eq!(packet.id(), 0x1234);
        assert!(packet.has_flags(PacketFlag::RECURSION_DESIRED));
        assert_eq!(packet.questions[0].qname.to_string(), "web.netcon.test");
        assert_eq!(packet.questions[0].qtype, QTYPE::TYPE(TYPE::AAAA));
    }

    #[test]
    fn query_rejects_bad_names() {
        for bad in ["", ".", "a..b", &"x".repeat(64)] {
            assert_eq!(
                build_lookup(1, bad, RecordType::A),
                Err(InvalidName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn follows_cname_chain() {
        let rr = |name: &'static str, rdata| {
            ResourceRecord::new(Name::new(name).unwrap(), CLASS::IN, 60, rdata)
        };
        let answers = vec![
            rr("web.test", RData::A(A::from(Ipv4Addr::new(192, 0, 2, 9)))),
            rr(
                "www.test",
                RData::CNAME(CNAME(Name::new("WEB.test").unwrap())),
            ),
            rr("other.test", RData::A(A::from(Ipv4Addr::new(192, 0, 2, 1)))),
        ];
        let bytes = response(7, "www.test", RCODE::NoError, answers);
        let Outcome::Records(records) =
            read_response(&bytes, 7, "WWW.test", RecordType::A).unwrap()
        else {
            panic!("expected records");
        };
        assert_eq!(records.canonical.to_ascii_lowercase(), "web.test");
        assert_eq!(records.aliases, ["WWW.test"]);
        assert_eq!(records.addrs, [IpAddr::from(Ipv4Addr::new(192, 0, 2, 9))]);
    }

    #[test]
    fn rcodes_and_mismatches() {
        let bytes = response(7, "gone.test", RCODE::NameError, Vec::new());
        assert_eq!(
            read_response(&bytes, 7, "gone.test", RecordType::A),
            Ok(Outcome::NoSuchName)
        );
        assert_eq!(
            read_response(&bytes, 8, "gone.test", RecordType::A),
            Err(ResponseError::Mismatch)
        );
        assert_eq!(
            read_response(&bytes, 7, "other.test", RecordType::A),
            Err(ResponseError::Mismatch)
        );
        assert_eq!(
            read_response(&bytes[..5], 7, "gone.test", RecordType::A),
            Err(ResponseError::Malformed)
        );
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.77.0.1".parse().unwrap()),
            "1.0.77.10.in-addr.arpa"
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
    }

    #[test]
    fn parse_never_panics_on_noise() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = read_response(&bytes, 1, "x.test", RecordType::A);
        }
    }
}
