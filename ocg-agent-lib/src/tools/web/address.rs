//! Which addresses `web_fetch` may connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is an ordinary public address: not loopback, private,
/// link-local (which holds the cloud metadata address 169.254.169.254),
/// carrier-grade NAT, unspecified, multicast, broadcast, reserved,
/// documentation or benchmarking space, nor an IPv6 unique-local or
/// site-local address. IPv6 forms that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by that address; Teredo is refused.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0                                    // "this network"
        || a == 10                                          // private
        || (a == 100 && (64..128).contains(&b))             // carrier-grade NAT
        || a == 127                                         // loopback
        || (a == 169 && b == 254)                           // link-local, metadata
        || (a == 172 && (16..32).contains(&b))              // private
        || (a == 192 && b == 0 && c == 0)                   // IETF assignments
        || (a == 192 && b == 0 && c == 2)                   // documentation
        || (a == 192 && b == 168)                           // private
        || (a == 198 && (b == 18 || b == 19))               // benchmarking
        || (a == 198 && b == 51 && c == 100)                // documentation
        || (a == 203 && b == 0 && c == 113)                 // documentation
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible form.
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    let refused = (s[0] == 0x64 && s[1] == 0xff9b)          // local-use NAT64
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])          // discard
        || (s[0] == 0x2001 && s[1] == 0)                    // Teredo
        || (s[0] == 0x2001 && s[1] == 0xdb8)                // documentation
        || (s[0] & 0xfe00) == 0xfc00                        // unique local, fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80                        // link-local
        || (s[0] & 0xffc0) == 0xfec0                        // site-local
        || (s[0] & 0xff00) == 0xff00; // multicast
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn public(ip: &str) -> bool {
        is_public_address(IpAddr::from_str(ip).unwrap())
    }

    #[test]
    fn the_classifier_refuses_every_internal_range() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!public(ip), "{ip} should be refused");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.167.1.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(public(ip), "{ip} should be allowed");
        }
    }
}
