//! Personal data: the store never keeps an email or IP address (`docs/privacy.md`).
//!
//! Free text is scanned for addresses in every spelling exports and APIs have been seen
//! to use (percent-encoded once or more, `＠` and `[at]`, internationalized and
//! punycode domains, IPs with ports, zero-padded or after `-`, `/`, `:`, `%3D`, IPv6 in
//! any compression), and each is replaced by a stable hash so distinct counts still
//! work. A scan is linear: every look-around is bounded.
//!
//! A company domain is the other side of the same rule: a host name under a public
//! suffix (the Public Suffix List, through `psl`), never an address in any spelling.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use psl::Psl;
use sha2::{Digest, Sha256};

/// `prefix` and the first 8 bytes of the text's SHA-256, in hex.
pub fn hashed(prefix: &str, text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(prefix.len() + 16);
    out.push_str(prefix);
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Replaces every email address and every IP address in `text` by a stable hash
/// (`email-hash:…`, `ip-hash:…`, the same for every spelling of one address). Applied to
/// every text field of an activity, whatever its source, and to the raw text and
/// reasons of quarantined lines.
pub fn redact_personal_data(text: &str) -> Cow<'_, str> {
    if !may_hold_an_address(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if let Some(email) = email_at(bytes, i)
            && email.start >= copied
        {
            out.push_str(&text[copied..email.start]);
            let address = format!("{}@{}", &text[email.start..i], &text[email.domain..email.end]).to_lowercase();
            out.push_str(&hashed("email-hash:", &address));
            copied = email.end;
            i = email.end;
            continue;
        }
        if let Some((end, ip)) = ip_at(bytes, i) {
            out.push_str(&text[copied..i]);
            out.push_str(&hashed("ip-hash:", &ip.to_string()));
            copied = end;
            i = end;
            continue;
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Text with no `@` in any spelling, no `:` (IPv6), and fewer than three dots holds
/// neither kind of address: most fields, skipped at the cost of one pass.
fn may_hold_an_address(bytes: &[u8]) -> bool {
    let mut dots = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'@' | b':' | b'%' | 0xEF => return true,
            b'.' => {
                dots += 1;
                if dots >= 3 {
                    return true;
                }
            }
            b'[' | b'(' if at_word(bytes, i).is_some() => return true,
            _ => {}
        }
    }
    false
}

/// `[at]` or `(at)` at `i`: the index after it.
fn at_word(bytes: &[u8], i: usize) -> Option<usize> {
    let w = bytes.get(i..i + 4)?;
    let close = if w[0] == b'[' { b']' } else { b')' };
    (matches!(w[0], b'[' | b'(') && w[1].eq_ignore_ascii_case(&b'a') && w[2].eq_ignore_ascii_case(&b't') && w[3] == close)
        .then_some(i + 4)
}

/// The `@` of an address in any of its spellings at `i`: `@`, `%40` (`%2540`, …: encoded
/// again and again), fullwidth `＠`, `[at]`. Returns the index after it.
fn at_sign(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes[i] {
        b'@' => Some(i + 1),
        b'%' => {
            let mut j = i + 1;
            while bytes.get(j..j + 2) == Some(b"25") && j - i < 64 {
                j += 2;
            }
            (bytes.get(j..j + 2) == Some(b"40")).then_some(j + 2)
        }
        0xEF if bytes.get(i..i + 3) == Some("＠".as_bytes()) => Some(i + 3),
        b'[' | b'(' => at_word(bytes, i),
        _ => None,
    }
}

fn is_local_byte(b: u8) -> bool {
    // The characters addresses use in practice, and any non-ASCII letter (RFC 6531);
    // RFC 5321 allows more, which would swallow the quotes and brackets around an
    // address in a sentence.
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'') || b >= 0x80
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b >= 0x80
}

struct Email {
    start: usize,
    /// Where the domain starts (after the at sign).
    domain: usize,
    end: usize,
}

/// An email address whose at sign is at `i`.
fn email_at(bytes: &[u8], i: usize) -> Option<Email> {
    let after = at_sign(bytes, i)?;
    // Bounded scans keep the redaction linear on hostile input (no local part is longer
    // than 64 bytes, no domain longer than 253).
    let mut start = i;
    while start > 0 && i - start < 256 && is_local_byte(bytes[start - 1]) {
        start -= 1;
    }
    while start < i && is_continuation(bytes[start]) {
        start += 1;
    }
    if start == i {
        return None;
    }
    // An address literal: `jane@[203.0.113.7]` or `jane@[IPv6:2001:db8::1]`.
    if bytes.get(after) == Some(&b'[') {
        let close = bytes[after..].iter().take(64).position(|&b| b == b']')? + after;
        let inside = std::str::from_utf8(&bytes[after + 1..close]).ok()?;
        let inside = inside.strip_prefix("IPv6:").unwrap_or(inside);
        return parse_ip(inside).is_some().then_some(Email { start, domain: after, end: close + 1 });
    }
    let mut end = after;
    while end < bytes.len() && end - after < 256 {
        if is_domain_byte(bytes[end]) {
            end += 1;
        } else if bytes[end] == b'%' && bytes.get(end + 1..end + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            end += 3;
        } else {
            break;
        }
    }
    let mut end = end.min(bytes.len());
    while end > after && is_continuation(*bytes.get(end).unwrap_or(&0)) {
        end -= 1;
    }
    // A trailing dot or dash ends the sentence, and an escape (`%20`) what follows it,
    // not the domain.
    loop {
        if end > after && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        } else if end >= after + 3 && bytes[end - 3] == b'%' {
            end -= 3;
        } else {
            break;
        }
    }
    let domain = std::str::from_utf8(&bytes[after..end]).ok()?;
    let tld = domain.rsplit('.').next()?;
    let tld_like = (tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
        || tld.to_ascii_lowercase().starts_with("xn--")
        || (!tld.is_ascii() && tld.chars().all(char::is_alphanumeric));
    let looks_like_domain = domain.contains('.') && domain.split('.').all(|l| !l.is_empty()) && tld_like;
    looks_like_domain.then_some(Email { start, domain: after, end })
}

fn is_continuation(b: u8) -> bool {
    (0x80..0xC0).contains(&b)
}

/// An IP address starting at `i` and not inside a longer word or number: its end and
/// the address.
fn ip_at(bytes: &[u8], i: usize) -> Option<(usize, IpAddr)> {
    let b = bytes[i];
    let starts_compressed = b == b':' && bytes.get(i + 1) == Some(&b':');
    if !(b.is_ascii_hexdigit() || starts_compressed) {
        return None;
    }
    if i > 0 {
        let prev = bytes[i - 1];
        // `v1.2.3.4` and `a1.2.3.4` are words; `%3D203.0.113.7` is `=203.0.113.7`.
        let escaped = i >= 3 && bytes[i - 3] == b'%' && bytes[i - 2].is_ascii_hexdigit();
        if (prev.is_ascii_alphanumeric() && !escaped) || prev == b'.' {
            return None;
        }
    }
    ipv6_at(bytes, i).or_else(|| ipv4_at(bytes, i).map(|(end, v4)| (end, IpAddr::V4(v4))))
}

/// IPv6 in any compression (`2001:db8::1`, `::ffff:198.51.100.7`, upper case), ended by
/// anything but a hex digit, colon or dot (a zone `%eth0`, `]`, `/`).
fn ipv6_at(bytes: &[u8], i: usize) -> Option<(usize, IpAddr)> {
    let mut end = i;
    while end < bytes.len() && end - i <= 45 && (bytes[end].is_ascii_hexdigit() || matches!(bytes[end], b'.' | b':')) {
        end += 1;
    }
    // Glued to a word, or longer than any address with a port: not one.
    let in_run = |b: &u8| b.is_ascii_hexdigit() || matches!(b, b'.' | b':');
    if bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || in_run(b)) {
        return None;
    }
    // The longest prefix that is an address, cut before a colon or dot: trailing
    // punctuation ends a sentence (`… from 2001:db8::1.`), and a port may follow
    // (`2001:db8:::8443`, unbracketed).
    for _ in 0..12 {
        if end <= i {
            break;
        }
        let candidate = std::str::from_utf8(&bytes[i..end]).ok()?;
        if !candidate.contains(":::")
            && candidate.matches(':').count() >= 2
            && candidate.bytes().any(|c| c.is_ascii_digit())
            && let Ok(v6) = candidate.parse::<Ipv6Addr>()
        {
            return Some((end, IpAddr::V6(v6)));
        }
        end -= 1;
        while end > i && !matches!(bytes[end], b'.' | b':') {
            end -= 1;
        }
    }
    None
}

/// Dotted-quad IPv4, zero-padded octets included (`192.168.010.021`), followed by
/// anything but more of a number (`:8443` and `/x` end it; `.5` does not). Network
/// addresses `n.0.0.0` name no one, and are how Chrome spells its version
/// (`Chrome/120.0.0.0`): they stay.
fn ipv4_at(bytes: &[u8], i: usize) -> Option<(usize, Ipv4Addr)> {
    let mut octets = [0u8; 4];
    let mut at = i;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let digits = bytes[at.min(bytes.len())..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        let value: u16 = std::str::from_utf8(&bytes[at..at + digits]).ok()?.parse().ok()?;
        *octet = u8::try_from(value).ok()?;
        at += digits;
    }
    let more_number = bytes.get(at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        || (bytes.get(at) == Some(&b'.') && bytes.get(at + 1).is_some_and(u8::is_ascii_digit));
    if more_number || octets[1..] == [0, 0, 0] {
        return None;
    }
    Some((at, Ipv4Addr::from(octets)))
}

/// An IP address in any textual spelling: dotted quad (also zero-padded), IPv6, or
/// IPv6 in brackets.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    if let Ok(ip) = inner.parse::<IpAddr>() {
        return Some(ip);
    }
    match ipv4_at(inner.as_bytes(), 0) {
        Some((end, v4)) if end == inner.len() => Some(IpAddr::V4(v4)),
        _ => None,
    }
}

/// Whether a host names an address rather than a name, in any spelling a resolver or
/// browser accepts: a dotted quad, zero-padded or not, and any host whose last label is
/// a number (`3325256705`, `0xc6.0x33.0x64.0x17`, `0300.051.0144.027`, as the WHATWG
/// URL standard reads hosts), IPv6 with or without brackets.
pub fn is_address(host: &str) -> bool {
    let host = host.trim().trim_end_matches('.');
    if parse_ip(host).is_some() || host.contains(':') {
        return true;
    }
    let last = host.rsplit('.').next().unwrap_or(host).to_ascii_lowercase();
    let hex = last.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || hex)
}

/// Top-level domains reserved for documentation (RFC 2606), which examples and tests
/// use as company domains; they are never an address and never a person.
const DOCUMENTATION_TLDS: [&str; 1] = ["example"];

/// Whether a normalized host is a company domain: a name (not an address) one label
/// under a public suffix or deeper (`acme.com`, `acme.co.uk`, `例子.中国`), so that
/// `co.uk` alone, `acme.internal` and `192.168.010.021` are not.
pub fn is_company_domain(host: &str) -> bool {
    if is_address(host) {
        return false;
    }
    let documentation = host.rsplit('.').next().is_some_and(|tld| DOCUMENTATION_TLDS.contains(&tld)) && host.contains('.');
    documentation || psl::List.domain(host.as_bytes()).is_some_and(|d| d.suffix().is_known())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_and_ips_in_free_text_are_replaced_by_hashes() {
        let cases = [
            ("mail jane.doe+x@Acme.com now", "mail email-hash:"),
            ("/docs?u=jane%40acme.com&x=1", "/docs?u=email-hash:"),
            ("from 203.0.113.7.", "from ip-hash:"),
            ("http://[2001:db8::1]:443/x", "http://[ip-hash:"),
            ("ip=2001:db8::42&y", "ip=ip-hash:"),
            ("to heidi@[198.51.100.79] now", "to email-hash:"),
            ("198.51.100.99:8443", "ip-hash:"),
            ("id-203.0.113.77", "id-ip-hash:"),
            ("/api/clients/2001:db8:85a3::8a2e:370:7334/stats", "/api/clients/ip-hash:"),
            ("ip:::ffff:198.51.100.23", "ip:ip-hash:"),
            ("q%3D203.0.113.88", "q%3Dip-hash:"),
            ("192.168.010.021", "ip-hash:"),
            ("jöhn.müller@exämple.de", "email-hash:"),
            ("li.wei@例子.中国", "email-hash:"),
            ("ivan@example.xn--p1ai", "email-hash:"),
            ("jane%2540double.com", "email-hash:"),
            ("kim＠fullwidth.example", "email-hash:"),
            ("frank[at]initech.example", "email-hash:"),
            ("fe80::1ff:fe23:4567:890a%eth0", "ip-hash:"),
            ("2001:DB8:0:0:8:800:200C:417A", "ip-hash:"),
        ];
        for (text, starts) in cases {
            let out = redact_personal_data(text);
            assert!(out.starts_with(starts), "{text} → {out}");
            for part in ["@", "%40", "＠", "[at]", "203.0", "198.51", "db8", "DB8", "192.168", "jane", "li.wei", "müller", "fe23"] {
                assert!(!out.contains(part), "{text} → {out}");
            }
        }
        for kept in ["Chrome/120.0.0.0 Safari", "v1.2.3.4", "2026-03-01T12:00:00Z", "a@b", "x@localhost", "std::fmt", "10:30", "1.2.3.4.5", "sha:deadbeef"] {
            assert_eq!(redact_personal_data(kept), kept);
        }
    }

    #[test]
    fn every_spelling_of_one_address_gets_one_hash() {
        assert_eq!(redact_personal_data("192.168.010.021"), redact_personal_data("192.168.10.21"));
        assert_eq!(redact_personal_data("2001:DB8::1"), redact_personal_data("2001:0db8:0:0::1"));
        let plain = redact_personal_data("jane@double.com").into_owned();
        for other in ["Jane@Double.com", "jane%40double.com", "jane%2540double.com", "jane[at]double.com", "jane＠double.com"] {
            assert_eq!(redact_personal_data(other), plain, "{other}");
        }
    }

    #[test]
    fn a_company_domain_is_a_name_under_a_public_suffix() {
        for ok in ["acme.com", "acme.co.uk", "例子.中国", "exämple.de", "example.xn--p1ai", "tiers.example"] {
            assert!(is_company_domain(ok), "{ok}");
        }
        for not in [
            "192.168.010.021", "198.51.100.7", "3325256705", "0xc6.0x33.0x64.0x17", "0300.051.0144.027", "1.2.3", "co.uk",
            "acme.internal", "localhost", "com", "[2001:db8::1]",
        ] {
            assert!(!is_company_domain(not), "{not}");
        }
    }

    #[test]
    fn hostile_text_is_scanned_in_linear_time() {
        // Each shape once made a scan quadratic or close to it (a megabyte of colons
        // took a minute); a fifth of a megabyte must take well under a second.
        for unit in ["::::::", "1:1:1:1:1:1:1:1:1 ", "a@b@c@", "%25%25%25%2540", "1.1.1.1.1.1.1.", "[at][at]"] {
            let text = unit.repeat(200_000 / unit.len());
            let started = std::time::Instant::now();
            let out = redact_personal_data(&text);
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{unit:?}: {:?}", started.elapsed());
            assert!(!out.is_empty());
        }
    }

    fn ipv4() -> impl Strategy<Value = String> {
        (any::<[u8; 4]>(), any::<bool>()).prop_filter("n.0.0.0 is a network", |(o, _)| o[1..] != [0, 0, 0]).prop_map(|(o, pad)| {
            let octet = |b: u8| if pad { format!("{b:03}") } else { b.to_string() };
            format!("{}.{}.{}.{}", octet(o[0]), octet(o[1]), octet(o[2]), octet(o[3]))
        })
    }

    fn ipv6() -> impl Strategy<Value = String> {
        (any::<[u16; 8]>(), 0usize..8, 0usize..4, any::<bool>()).prop_map(|(groups, from, len, upper)| {
            let mut g = groups;
            g[0] |= 0x2000; // keeps a digit in it
            for x in g.iter_mut().skip(from).take(len) {
                *x = 0;
            }
            let text = Ipv6Addr::from(g).to_string();
            if upper { text.to_uppercase() } else { text }
        })
    }

    fn email() -> impl Strategy<Value = String> {
        (
            "[a-z0-9._+-]{0,10}[a-zäöüé0-9]{1,8}",
            prop::sample::select(vec!["@", "%40", "%2540", "＠", "[at]", "(AT)"]),
            "[a-z0-9-]{0,6}[a-zäöü例子]{1,8}",
            prop::sample::select(vec!["com", "co.uk", "xn--p1ai", "中国", "DE"]),
        )
            .prop_map(|(local, at, host, tld)| format!("{local}{at}{host}.{tld}"))
    }

    proptest! {
        /// Whatever surrounds it (a port, a path, an encoded `=`, a sentence), an
        /// address never survives, and redacting twice changes nothing more.
        #[test]
        fn no_address_survives_whatever_surrounds_it(
            address in prop_oneof![ipv4(), ipv6(), email()],
            before in prop::sample::select(vec!["", " ", "-", "/", ":", "%3D", "=", "(", "\"", "ip:", "id-", "/api/clients/", "u=", "<"]),
            after in prop::sample::select(vec!["", " ", ":8443", "/stats", ".", ",", "&x=1", ")", "%20", ">", "?q", "%eth0"]),
            noise in "[a-z ]{0,12}",
        ) {
            let text = format!("{noise} {before}{address}{after} {noise}");
            let out = redact_personal_data(&text);
            prop_assert!(!out.contains(&address), "{text} → {out}");
            prop_assert!(!out.to_lowercase().contains(&address.to_lowercase()), "{text} → {out}");
            if let Some(ip) = parse_ip(&address) {
                prop_assert!(!out.contains(&ip.to_string()), "{text} → {out}");
            }
            prop_assert_eq!(redact_personal_data(&out), out.clone());
        }

        /// Any text at all, the fragments of addresses cut anywhere among other
        /// characters included, is scanned without a panic and comes out stable.
        #[test]
        fn any_text_is_scanned(text in "(\\PC|[@.:%\\[\\]＠0-9a-f]|%25|%40|\\[at\\]){0,80}") {
            let out = redact_personal_data(&text);
            prop_assert_eq!(redact_personal_data(&out), out.clone());
        }

        /// Text without addresses comes back as it was, borrowed.
        #[test]
        fn text_without_addresses_is_kept(text in "[a-zA-Z ,;/_=-]{0,64}") {
            prop_assert!(matches!(redact_personal_data(&text), Cow::Borrowed(_)));
        }
    }
}
