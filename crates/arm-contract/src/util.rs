//! Small pieces shared by the modules: identifiers, times, URL decoding, IPv4 prefixes and ARM
//! resource ids.

use std::net::Ipv4Addr;
use std::time::SystemTime;

use rand::Rng;

/// A random version-4 UUID in its usual text form.
pub(crate) fn new_uuid() -> String {
    let mut bits: u128 = rand::rng().random();
    bits &= !(0xf000u128 << 64);
    bits |= 0x4000u128 << 64;
    bits &= !(0xc000u128 << 48);
    bits |= 0x8000u128 << 48;
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `n` random lowercase hexadecimal digits.
pub(crate) fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// The current time in RFC 3339 with microseconds, UTC.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// ARM compares locations without case and spaces ("West Europe" is "westeurope").
pub(crate) fn normalize_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// An IPv4 prefix such as `10.0.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// The network address.
    pub network: u32,
    /// The prefix length.
    pub len: u8,
}

impl Prefix {
    /// Parses `a.b.c.d/n`; the host bits are cleared.
    pub(crate) fn parse(text: &str) -> Option<Prefix> {
        let (addr, len) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.trim().parse().ok()?;
        let len: u8 = len.trim().parse().ok()?;
        if len > 32 {
            return None;
        }
        let mask = Self::mask(len);
        Some(Prefix {
            network: u32::from(addr) & mask,
            len,
        })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// The broadcast (last) address.
    pub(crate) fn broadcast(&self) -> u32 {
        self.network | !Self::mask(self.len)
    }

    /// Whether `addr` lies in the prefix.
    pub(crate) fn contains(&self, addr: u32) -> bool {
        addr & Self::mask(self.len) == self.network
    }

    /// Whether Azure reserves `addr` in a subnet with this prefix: the network address, the next
    /// three (gateway and DNS) and the broadcast address.
    pub(crate) fn reserved(&self, addr: u32) -> bool {
        addr < self.network.saturating_add(4) || addr == self.broadcast()
    }

    /// The lowest address a NIC may receive that `used` does not hold yet.
    pub(crate) fn next_free(&self, used: &[u32]) -> Option<u32> {
        let first = self.network.checked_add(4)?;
        let last = self.broadcast().checked_sub(1)?;
        (first..=last).find(|a| !used.contains(a))
    }
}

/// Text form of an IPv4 address held as a number.
pub(crate) fn ip_text(addr: u32) -> String {
    Ipv4Addr::from(addr).to_string()
}

/// A parsed ARM resource id:
/// `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}]*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResourceId {
    /// The subscription.
    pub subscription: String,
    /// The resource group.
    pub resource_group: String,
    /// The provider namespace, e.g. `Microsoft.Network`.
    pub namespace: String,
    /// Type and name pairs, outermost first.
    pub parts: Vec<(String, String)>,
}

impl ResourceId {
    /// Parses an id; the fixed segments are matched without case.
    pub(crate) fn parse(id: &str) -> Option<ResourceId> {
        let rest = id.strip_prefix('/')?;
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.len() < 8 || !segs.len().is_multiple_of(2) {
            return None;
        }
        if !segs[0].eq_ignore_ascii_case("subscriptions")
            || !segs[2].eq_ignore_ascii_case("resourceGroups")
            || !segs[4].eq_ignore_ascii_case("providers")
        {
            return None;
        }
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        let parts = segs[6..]
            .chunks(2)
            .map(|c| (c[0].to_string(), percent_decode(c[1])))
            .collect();
        Some(ResourceId {
            subscription: segs[1].to_string(),
            resource_group: percent_decode(segs[3]),
            namespace: segs[5].to_string(),
            parts,
        })
    }

    /// Whether the id names a resource of `namespace`/`types` (types outermost first), without case.
    pub(crate) fn is(&self, namespace: &str, types: &[&str]) -> bool {
        self.namespace.eq_ignore_ascii_case(namespace)
            && self.parts.len() == types.len()
            && self
                .parts
                .iter()
                .zip(types)
                .all(|((t, _), want)| t.eq_ignore_ascii_case(want))
    }

    /// The name of the `i`-th type/name pair.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.parts[i].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_uuids() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]));
        assert_ne!(u, new_uuid());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("vm%2D1"), "vm-1");
    }

    #[test]
    fn locations_compare_without_case_and_spaces() {
        assert_eq!(normalize_location("West Europe"), "westeurope");
    }

    #[test]
    fn prefixes() {
        let p = Prefix::parse("10.0.1.0/24").unwrap();
        assert_eq!(ip_text(p.network), "10.0.1.0");
        assert_eq!(ip_text(p.broadcast()), "10.0.1.255");
        assert!(p.contains(u32::from(Ipv4Addr::new(10, 0, 1, 77))));
        assert!(!p.contains(u32::from(Ipv4Addr::new(10, 0, 2, 1))));
        for last in [0, 1, 2, 3, 255] {
            assert!(p.reserved(u32::from(Ipv4Addr::new(10, 0, 1, last))));
        }
        assert!(!p.reserved(u32::from(Ipv4Addr::new(10, 0, 1, 4))));
        assert_eq!(ip_text(p.next_free(&[]).unwrap()), "10.0.1.4");
        let used = [
            u32::from(Ipv4Addr::new(10, 0, 1, 4)),
            u32::from(Ipv4Addr::new(10, 0, 1, 6)),
        ];
        assert_eq!(ip_text(p.next_free(&used).unwrap()), "10.0.1.5");
        assert_eq!(Prefix::parse("10.0.1.9/24").unwrap().network, p.network);
        assert!(Prefix::parse("10.0.1.0/33").is_none());
        assert!(Prefix::parse("10.0.1.0").is_none());
    }

    #[test]
    fn small_subnets_run_out() {
        // A /29 has 8 addresses: 4 reserved at the start and the broadcast, so 3 usable.
        let p = Prefix::parse("10.0.0.0/29").unwrap();
        let mut used = Vec::new();
        while let Some(a) = p.next_free(&used) {
            used.push(a);
        }
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn resource_ids() {
        let id = ResourceId::parse(
            "/subscriptions/s/resourcegroups/RG/providers/microsoft.network/virtualNetworks/v/subnets/d",
        )
        .unwrap();
        assert_eq!(id.subscription, "s");
        assert_eq!(id.resource_group, "RG");
        assert!(id.is("Microsoft.Network", &["virtualNetworks", "subnets"]));
        assert!(!id.is("Microsoft.Network", &["virtualNetworks"]));
        assert_eq!(id.name(0), "v");
        assert_eq!(id.name(1), "d");
        assert!(ResourceId::parse("subscriptions/s").is_none());
        assert!(ResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/x/y").is_none());
        assert!(ResourceId::parse("/subscriptions/s/resourceGroups//providers/x/y/z").is_none());
    }
}
