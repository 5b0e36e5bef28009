//! Ensemble members: where each one listens, written as the group's logical IDs.
//!
//! A member is written `host`, `host:clientPort` or `host:clientPort:peerPort:electionPort`
//! (`10.0.0.1`, `127.0.0.1:2181`, `127.0.0.1:2181:2888:3888`; an IPv6 host goes in brackets,
//! `[::1]:2181`). Ports left out are ZooKeeper's defaults: 2181, 2888 and 3888.
//! A member's `myid` is its 1-based position in the ensemble list.

use std::fmt;

/// The client port when none is written.
pub const DEFAULT_CLIENT_PORT: u16 = 2181;
/// The quorum (peer) port when none is written.
pub const DEFAULT_PEER_PORT: u16 = 2888;
/// The leader election port when none is written.
pub const DEFAULT_ELECTION_PORT: u16 = 3888;

/// Where one member listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// Host name or address, without brackets.
    pub host: String,
    /// The port clients (and the health check) connect to.
    pub client_port: u16,
    /// The port followers connect to the leader on.
    pub peer_port: u16,
    /// The port used for leader election.
    pub election_port: u16,
}

impl Member {
    /// Parses `host[:client[:peer:election]]`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Member, String> {
        if s.trim() != s || s.is_empty() {
            return Err("must be host, host:clientPort or host:clientPort:peerPort:electionPort, without spaces".into());
        }
        let (host, rest) = if let Some(inner) = s.strip_prefix('[') {
            let (host, rest) = inner
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: an IPv6 host needs a closing ']'"))?;
            match rest {
                "" => (host, None),
                _ => match rest.strip_prefix(':') {
                    Some(ports) => (host, Some(ports)),
                    None => return Err(format!("{s:?}: expected ':' after ']'")),
                },
            }
        } else {
            match s.split_once(':') {
                Some((host, ports)) => (host, Some(ports)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: the host is empty"));
        }
        if let Some(c) = host.chars().find(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '[' | ']' | ';' | '=')
        }) {
            return Err(format!("{s:?}: the host may not contain {c:?}"));
        }
        let ports: Vec<&str> = match rest {
            None => vec![],
            Some(r) => r.split(':').collect(),
        };
        let port = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{s:?}: {p:?} is not a port (1-65535)")),
            }
        };
        let (client_port, peer_port, election_port) = match ports.as_slice() {
            [] => (
                DEFAULT_CLIENT_PORT,
                DEFAULT_PEER_PORT,
                DEFAULT_ELECTION_PORT,
            ),
            [c] => (port(c)?, DEFAULT_PEER_PORT, DEFAULT_ELECTION_PORT),
            [c, p, e] => (port(c)?, port(p)?, port(e)?),
            _ => {
                return Err(format!(
                    "{s:?}: give one port (client) or three (client:peer:election), not {}",
                    ports.len()
                ))
            }
        };
        let member = Member {
            host: host.to_string(),
            client_port,
            peer_port,
            election_port,
        };
        if member.ports().len() != 3 {
            return Err(format!(
                "{s:?}: the client, peer and election ports must differ"
            ));
        }
        Ok(member)
    }

    /// The distinct ports the member listens on.
    fn ports(&self) -> std::collections::BTreeSet<u16> {
        [self.client_port, self.peer_port, self.election_port].into()
    }

    /// The host as written in addresses: brackets around IPv6.
    fn host_for_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host:clientPort`, where clients and the health check connect.
    pub fn client_address(&self) -> String {
        format!("{}:{}", self.host_for_address(), self.client_port)
    }

    /// The value of the member's `server.N` line: `host:peerPort:electionPort`.
    pub fn server_entry(&self) -> String {
        format!(
            "{}:{}:{}",
            self.host_for_address(),
            self.peer_port,
            self.election_port
        )
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host_for_address(), self.client_port)?;
        write!(f, ":{}:{}", self.peer_port, self.election_port)
    }
}

/// The members of an ensemble, in `myid` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensemble {
    members: Vec<Member>,
}

/// Why a list of members is not an ensemble: which entry, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleError {
    /// Position of the bad entry in the list (0-based).
    pub index: usize,
    /// What is wrong with it.
    pub message: String,
}

impl Ensemble {
    /// Parses a list of members. Every entry must parse, no member may appear twice, and two
    /// members on the same host may not share a port.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Ensemble, EnsembleError> {
        if list.is_empty() {
            return Err(EnsembleError {
                index: 0,
                message: "an ensemble needs at least one member".into(),
            });
        }
        let mut members: Vec<Member> = Vec::with_capacity(list.len());
        for (index, s) in list.iter().enumerate() {
            let m =
                Member::parse(s.as_ref()).map_err(|message| EnsembleError { index, message })?;
            for (j, other) in members.iter().enumerate() {
                if *other == m {
                    return Err(EnsembleError {
                        index,
                        message: format!("{} is already member {} of the list", m, j + 1),
                    });
                }
                if other.host.eq_ignore_ascii_case(&m.host) {
                    if let Some(p) = other.ports().intersection(&m.ports()).next() {
                        return Err(EnsembleError {
                            index,
                            message: format!(
                                "port {p} on {} is already used by member {} ({other})",
                                m.host,
                                j + 1
                            ),
                        });
                    }
                }
            }
            members.push(m);
        }
        Ok(Ensemble { members })
    }

    /// The members, in `myid` order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The `myid` (1-based position) of the member written `logical_id`, if it is one.
    pub fn myid(&self, logical_id: &str) -> Option<u32> {
        let m = Member::parse(logical_id).ok()?;
        self.members
            .iter()
            .position(|x| *x == m)
            .map(|i| i as u32 + 1)
    }

    /// Clients' connect string: every member's `host:clientPort`, comma-separated.
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(Member::client_address)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &str, c: u16, p: u16, e: u16) -> Member {
        Member {
            host: host.into(),
            client_port: c,
            peer_port: p,
            election_port: e,
        }
    }

    #[test]
    fn every_written_form_parses() {
        assert_eq!(
            Member::parse("10.0.0.1").unwrap(),
            m("10.0.0.1", 2181, 2888, 3888)
        );
        assert_eq!(
            Member::parse("zk1:2182").unwrap(),
            m("zk1", 2182, 2888, 3888)
        );
        assert_eq!(
            Member::parse("127.0.0.1:2181:2888:3888").unwrap(),
            m("127.0.0.1", 2181, 2888, 3888)
        );
        let v6 = Member::parse("[::1]:2181:2888:3888").unwrap();
        assert_eq!(v6, m("::1", 2181, 2888, 3888));
        assert_eq!(v6.client_address(), "[::1]:2181");
        assert_eq!(v6.server_entry(), "[::1]:2888:3888");
        assert_eq!(Member::parse("[::1]").unwrap(), m("::1", 2181, 2888, 3888));
        let x = Member::parse("127.0.0.1:21810:28880:38880").unwrap();
        assert_eq!(x.client_address(), "127.0.0.1:21810");
        assert_eq!(x.server_entry(), "127.0.0.1:28880:38880");
        assert_eq!(x.to_string(), "127.0.0.1:21810:28880:38880");
    }

    #[test]
    fn bad_members_say_why() {
        for (bad, why) in [
            ("", "without spaces"),
            (" zk1", "without spaces"),
            (":2181", "host is empty"),
            ("zk1:0", "not a port"),
            ("zk1:70000", "not a port"),
            ("zk1:x", "not a port"),
            ("zk1:1:2", "one port"),
            ("zk1:1:2:3:4", "one port"),
            ("zk1:2181:2181:3888", "must differ"),
            ("[::1", "closing"),
            ("[::1]2181", "expected ':'"),
            ("zk/1", "may not contain"),
        ] {
            let e = Member::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn myids_are_positions_and_match_any_spelling() {
        let e = Ensemble::parse(&[
            "127.0.0.1:2181:2888:3888",
            "127.0.0.1:2182:2889:3889",
            "zk3",
        ])
        .unwrap();
        assert_eq!(e.myid("127.0.0.1:2181:2888:3888"), Some(1));
        assert_eq!(e.myid("127.0.0.1:2181"), Some(1), "defaults are filled in");
        assert_eq!(e.myid("127.0.0.1:2182:2889:3889"), Some(2));
        assert_eq!(e.myid("zk3:2181:2888:3888"), Some(3));
        assert_eq!(e.myid("zk4"), None);
        assert_eq!(e.myid("not a member"), None);
        assert_eq!(e.connect_string(), "127.0.0.1:2181,127.0.0.1:2182,zk3:2181");
    }

    #[test]
    fn clashing_members_are_rejected_with_their_position() {
        let err = |list: &[&str]| Ensemble::parse(list).unwrap_err();
        let e = err(&["zk1", "zk2", "zk1"]);
        assert_eq!(e.index, 2);
        assert!(e.message.contains("already member 1"), "{}", e.message);
        let e = err(&["h:2181:2888:3888", "h:2182:2888:3889"]);
        assert_eq!(e.index, 1);
        assert!(e.message.contains("port 2888"), "{}", e.message);
        let e = err(&["h:2181", "H:2181:2999:3999"]);
        assert!(e.message.contains("port 2181"), "{}", e.message);
        let e = err(&["zk1", "zk 2"]);
        assert_eq!(e.index, 1);
        assert!(Ensemble::parse::<&str>(&[]).is_err());
        // Different hosts may use the same ports.
        Ensemble::parse(&["zk1", "zk2", "zk3"]).unwrap();
    }
}
