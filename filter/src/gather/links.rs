//! The domains a message links to, for the URI blocklists.
//!
//! A spam run changes its sending IPs by the hour but has to point its readers at a few web
//! domains, so the domains linked from the body are what URI blocklists (Spamhaus DBL, URIBL,
//! SURBL) list. Links are found in the text parts (`http://`, `https://` and bare `www.` URLs)
//! and the HTML parts (the same scan covers `href="https://…"`), reduced to the *registrable*
//! domain with the Public Suffix List (`psl`): `https://a.b.example.co.uk/x` is looked up as
//! `example.co.uk`, which is how those lists are keyed. IP-literal hosts and hosts without a
//! known public suffix are skipped. Order is first appearance, duplicates dropped, at most
//! `max` domains: a message with a thousand links costs `max` lookups per zone.

use mail_parser::Message;

/// The registrable domains linked from `message`'s text and HTML parts: first seen first, at
/// most `max`.
pub fn linked_domains(message: &Message<'_>, max: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut i = 0;
    while found.len() < max
        && let Some(text) = message.body_text(i)
    {
        scan(&text, max, &mut found);
        i += 1;
    }
    let mut i = 0;
    while found.len() < max
        && let Some(html) = message.body_html(i)
    {
        scan(&html, max, &mut found);
        i += 1;
    }
    found
}

/// Adds the registrable domains of the URLs in `text` to `found`, up to `max` in all.
pub fn scan(text: &str, max: usize, found: &mut Vec<String>) {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut at = 0;
    while at < bytes.len() && found.len() < max {
        let rest = &lower[at..];
        let Some(host_start) = next_url(rest) else {
            break;
        };
        let host: String = rest[host_start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        at += host_start + host.len().max(1);
        if let Some(domain) = registrable(&host)
            && !found.contains(&domain)
        {
            found.push(domain);
        }
    }
}

/// Where the host of the next URL in `s` starts.
fn next_url(s: &str) -> Option<usize> {
    let candidates = [
        s.find("http://").map(|i| (i, i + "http://".len())),
        s.find("https://").map(|i| (i, i + "https://".len())),
        find_www(s).map(|i| (i, i)),
    ];
    candidates
        .into_iter()
        .flatten()
        .min_by_key(|(start, _)| *start)
        .map(|(_, host)| host)
}

/// `www.` at the start of a word (so `awww.x` is not a link, and a URL's own `www.` was already
/// taken with its scheme).
fn find_www(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find("www.") {
        let i = from + i;
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b"/.-@".contains(&bytes[i - 1]));
        if boundary {
            return Some(i);
        }
        from = i + 4;
    }
    None
}

/// The registrable domain of `host` (`a.b.example.co.uk` → `example.co.uk`); `None` for an IP
/// literal, a bare suffix, or a name without a known suffix.
pub fn registrable(host: &str) -> Option<String> {
    let host = host.trim_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.parse::<std::net::Ipv4Addr>().is_ok() || !host.contains('.') {
        return None;
    }
    let domain = psl::domain(host.as_bytes())?;
    // A suffix the list does not know is reported as a one-label "suffix" by psl's wildcard rule:
    // only trust suffixes that are in the list.
    if !domain.suffix().is_known() {
        return None;
    }
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        scan(text, 10, &mut found);
        found
    }

    #[test]
    fn urls_in_text_reduce_to_registrable_domains() {
        assert_eq!(
            domains(
                "Click https://Shop.Spam.example.co.uk/x?y=1 or http://spam.com:8080/, \
                 also www.other.net. Again: https://spam.com/z"
            ),
            ["example.co.uk", "spam.com", "other.net"]
        );
    }

    #[test]
    fn html_hrefs_are_found() {
        assert_eq!(
            domains(
                r#"<a href="https://login.bank-secure.com/">Bank</a><img src='http://cdn.tracker.org/p.gif'>"#
            ),
            ["bank-secure.com", "tracker.org"]
        );
    }

    #[test]
    fn ip_literals_unknown_suffixes_and_non_links_are_skipped() {
        assert!(domains("http://203.0.113.9/x http://localhost/ https://host.invalidtld/ swww.x.com mail@www.y.com").is_empty());
        assert_eq!(
            registrable("a.b.c.example.com."),
            Some("example.com".into())
        );
        assert_eq!(registrable("co.uk"), None);
    }

    #[test]
    fn the_cap_bounds_the_lookups() {
        let text: String = (0..50).map(|i| format!("https://d{i}.com/ ")).collect();
        let mut found = Vec::new();
        scan(&text, 3, &mut found);
        assert_eq!(found, ["d0.com", "d1.com", "d2.com"]);
    }

    #[test]
    fn a_message_s_text_and_html_parts_are_read() {
        let raw = b"From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nSee https://text.example.org/\r\n\
            --b\r\nContent-Type: text/html\r\n\r\n<a href=\"http://www.html.example.net/\">x</a>\r\n\
            --b--\r\n";
        let message = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .unwrap();
        assert_eq!(linked_domains(&message, 10), ["example.org", "example.net"]);
    }
}
