//! Rule sets as data: the rule file (TOML), its built-in defaults, and the loader.
//!
//! A rule file has the threshold at the top and one section per rule, named after the rule, each
//! with `enabled`, its weight or weights, and its settings. Every key is optional: what a file
//! leaves out is the built-in default ([`RuleSetFile::default`]), so an empty file is the default
//! rule set and a file only says what it changes. Unknown keys are errors, so a typo is not a
//! silently ignored setting. `filter/rules.example.toml` lists every key with its default.
//!
//! [`load`] is the one way from a path to a [`RuleSet`]; the live filter, its reloader and
//! `maildrop-filter replay` all call it, so a rule file means the same everywhere. A rule set's
//! version hashes the canonical configuration of its enabled rules and the [`Context`], not the
//! file's bytes: comments, order and defaults spelled out change nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rules::blocked_sender::BlockedSenderSettings;
use crate::rules::blocklist::{Blocklist, BlocklistSettings};
use crate::rules::dkim::{Dkim, DkimSettings};
use crate::rules::dmarc::{Dmarc, DmarcSettings};
use crate::rules::dnsbl::{Dnsbl, DnsblSettings};
use crate::rules::flood::{Flood, FloodSettings};
use crate::rules::header_sanity::{HeaderSanity, HeaderSanitySettings};
use crate::rules::rspamd::{RspamdRule, RspamdSettings};
use crate::rules::spf::{Spf, SpfSettings};
use crate::rules::uribl::{Uribl, UriblSettings};
use crate::rules::{BlockedSender, Rule, RuleSet};

/// The default threshold: a score at or above it rejects.
pub const DEFAULT_THRESHOLD: f64 = 5.0;

/// A rule file, parsed; `Default` is the built-in rule set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSetFile {
    /// Score at or above which a message is rejected.
    pub threshold: f64,
    pub blocked_sender: BlockedSenderSettings,
    pub header_sanity: HeaderSanitySettings,
    pub blocklist: BlocklistSettings,
    pub flood: FloodSettings,
    pub dnsbl: DnsblSettings,
    pub uribl: UriblSettings,
    pub spf: SpfSettings,
    pub dkim: DkimSettings,
    pub dmarc: DmarcSettings,
    pub rspamd: RspamdSettings,
}

impl Default for RuleSetFile {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            blocked_sender: BlockedSenderSettings::default(),
            header_sanity: HeaderSanitySettings::default(),
            blocklist: BlocklistSettings::default(),
            flood: FloodSettings::default(),
            dnsbl: DnsblSettings::default(),
            uribl: UriblSettings::default(),
            spf: SpfSettings::default(),
            dkim: DkimSettings::default(),
            dmarc: DmarcSettings::default(),
            rspamd: RspamdSettings::default(),
        }
    }
}

/// What a rule set needs to know about the installation that is not in the rule file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Our own domains (`MAILDROP_DOMAINS`), lower-case: `From` in one of them is forged.
    pub domains: Vec<String>,
}

/// Why a rule file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the rule file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rule file {path} is not valid")]
    Invalid {
        path: PathBuf,
        #[source]
        source: RuleFileError,
    },
}

/// What is wrong inside a rule file.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("{setting} must be a finite number")]
    NotFinite { setting: String },
    #[error("{setting} must be more than zero")]
    Zero { setting: String },
    #[error("{setting}: {zone:?} is not a DNS zone")]
    Zone { setting: String, zone: String },
    #[error("flood.exempt")]
    Network(#[source] maildrop_runtime::cidr::CidrError),
}

impl RuleSetFile {
    /// Parses and checks a rule file's text.
    pub fn parse(text: &str) -> Result<Self, RuleFileError> {
        let file: Self = toml::from_str(text)?;
        file.validate()?;
        Ok(file)
    }

    /// Checks what TOML types cannot: numbers are finite, windows are not empty, networks parse.
    pub fn validate(&self) -> Result<(), RuleFileError> {
        let finite = |setting: &str, v: f64| {
            v.is_finite().then_some(()).ok_or(RuleFileError::NotFinite {
                setting: setting.to_owned(),
            })
        };
        finite("threshold", self.threshold)?;
        finite("blocked_sender.weight", self.blocked_sender.weight)?;
        let h = &self.header_sanity;
        for (name, v) in [
            ("missing_date", h.missing_date),
            ("missing_message_id", h.missing_message_id),
            ("missing_from", h.missing_from),
            ("malformed_from", h.malformed_from),
            ("malformed_date", h.malformed_date),
            ("duplicate_header", h.duplicate_header),
            ("forged_from", h.forged_from),
            ("unparseable", h.unparseable),
        ] {
            finite(&format!("header_sanity.{name}"), v)?;
        }
        let b = &self.blocklist;
        for (name, v) in [
            ("sender", b.sender),
            ("domain", b.domain),
            ("ip", b.ip),
            ("subject", b.subject),
        ] {
            finite(&format!("blocklist.{name}"), v)?;
        }
        let f = &self.flood;
        finite("flood.weight", f.weight)?;
        for (name, d) in [
            ("window", f.window),
            ("ip_ban", f.ip_ban),
            ("subject_ban", f.subject_ban),
        ] {
            if d.is_zero() {
                return Err(RuleFileError::Zero {
                    setting: format!("flood.{name}"),
                });
            }
        }
        let zones = self.dnsbl.zones.iter().map(|z| ("dnsbl", z));
        for (rule, zone) in zones.chain(self.uribl.zones.iter().map(|z| ("uribl", z))) {
            finite(&format!("{rule}.zones.{}", zone.zone), zone.weight)?;
            if zone.zone.trim_matches('.').is_empty() || zone.zone.contains(char::is_whitespace) {
                return Err(RuleFileError::Zone {
                    setting: format!("{rule}.zones"),
                    zone: zone.zone.clone(),
                });
            }
        }
        let (s, k, m) = (&self.spf, &self.dkim, &self.dmarc);
        for (name, v) in [
            ("spf.fail", s.fail),
            ("spf.softfail", s.softfail),
            ("spf.neutral", s.neutral),
            ("spf.permerror", s.permerror),
            ("dkim.fail", k.fail),
            ("dkim.pass", k.pass),
            ("dmarc.reject", m.reject),
            ("dmarc.quarantine", m.quarantine),
            ("dmarc.none", m.none),
            ("rspamd.score_weight", self.rspamd.score_weight),
            ("rspamd.reject", self.rspamd.reject),
            ("rspamd.soft_reject", self.rspamd.soft_reject),
            ("rspamd.rewrite_subject", self.rspamd.rewrite_subject),
            ("rspamd.add_header", self.rspamd.add_header),
            ("rspamd.greylist", self.rspamd.greylist),
        ] {
            finite(name, v)?;
        }
        for network in &f.exempt {
            network
                .parse::<maildrop_runtime::cidr::Cidr>()
                .map_err(RuleFileError::Network)?;
        }
        Ok(())
    }

    /// The rule set these settings describe, for this installation.
    pub fn build(&self, context: &Context) -> Result<RuleSet, RuleFileError> {
        self.validate()?;
        let mut rules: Vec<Box<dyn Rule>> = Vec::new();
        if self.blocked_sender.enabled {
            rules.push(Box::new(BlockedSender::new(
                &self.blocked_sender.senders,
                self.blocked_sender.weight,
            )));
        }
        if self.header_sanity.enabled {
            rules.push(Box::new(HeaderSanity::new(
                self.header_sanity.clone(),
                &context.domains,
            )));
        }
        if self.blocklist.enabled {
            rules.push(Box::new(Blocklist::new(self.blocklist.clone())));
        }
        if self.flood.enabled {
            rules.push(Box::new(Flood::new(self.flood.clone())));
        }
        if self.dnsbl.enabled {
            rules.push(Box::new(Dnsbl::new(self.dnsbl.clone())));
        }
        if self.uribl.enabled {
            rules.push(Box::new(Uribl::new(self.uribl.clone())));
        }
        if self.spf.enabled {
            rules.push(Box::new(Spf::new(self.spf.clone())));
        }
        if self.dkim.enabled {
            rules.push(Box::new(Dkim::new(self.dkim.clone())));
        }
        if self.dmarc.enabled {
            rules.push(Box::new(Dmarc::new(self.dmarc.clone())));
        }
        if self.rspamd.enabled {
            rules.push(Box::new(RspamdRule::new(self.rspamd.clone())));
        }
        Ok(RuleSet::new(rules, self.threshold, self.clone()))
    }
}

/// The built-in rule set (no rule file).
pub fn defaults(context: &Context) -> RuleSet {
    RuleSetFile::default()
        .build(context)
        .expect("the built-in rule set is valid")
}

/// Reads, parses and builds the rule file at `path`.
pub fn load(path: &Path, context: &Context) -> Result<RuleSet, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_text(&text, context).map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Parses and builds a rule file's text.
pub fn from_text(text: &str, context: &Context) -> Result<RuleSet, RuleFileError> {
    RuleSetFile::parse(text)?.build(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../rules.example.toml");

    fn ctx() -> Context {
        Context {
            domains: vec!["maildrop.test".into()],
        }
    }

    #[test]
    fn the_example_file_is_the_defaults_spelled_out() {
        let example = RuleSetFile::parse(EXAMPLE).unwrap();
        assert_eq!(example, RuleSetFile::default());
        assert_eq!(
            from_text(EXAMPLE, &ctx()).unwrap().version(),
            defaults(&ctx()).version()
        );
    }

    #[test]
    fn an_empty_file_is_the_default_rule_set() {
        assert_eq!(
            from_text("", &ctx()).unwrap().version(),
            defaults(&ctx()).version()
        );
    }

    #[test]
    fn a_file_changes_only_what_it_says() {
        let file = RuleSetFile::parse("threshold = 7.5\n[flood]\nip_limit = 5\nwindow = \"30s\"\n")
            .unwrap();
        assert_eq!(file.threshold, 7.5);
        assert_eq!(file.flood.ip_limit, 5);
        assert_eq!(file.flood.window, std::time::Duration::from_secs(30));
        assert_eq!(file.flood.subject_limit, 20);
        assert_eq!(file.header_sanity, HeaderSanitySettings::default());
    }

    #[test]
    fn the_version_ignores_disabled_rules_and_formatting_but_not_settings() {
        let base = defaults(&ctx());
        let spelled = from_text("# a comment\nthreshold = 5.0\n", &ctx()).unwrap();
        assert_eq!(spelled.version(), base.version());
        let stricter = from_text("threshold = 4.0\n", &ctx()).unwrap();
        assert_ne!(stricter.version(), base.version());
        let off = from_text("[flood]\nenabled = false\n", &ctx()).unwrap();
        assert_ne!(off.version(), base.version());
        let off_other = from_text("[flood]\nenabled = false\nip_limit = 3\n", &ctx()).unwrap();
        assert_eq!(off.version(), off_other.version());
        assert_eq!(
            off.names().collect::<Vec<_>>(),
            [
                "blocked_sender",
                "header_sanity",
                "blocklist",
                "dnsbl",
                "uribl",
                "spf",
                "dkim",
                "dmarc",
                "rspamd"
            ]
        );
        // Another installation's domains are another rule set.
        assert_ne!(defaults(&Context::default()).version(), base.version());
    }

    #[test]
    fn bad_files_are_refused_with_the_setting_named() {
        for (text, needle) in [
            ("threshold = \"high\"\n", "threshold"),
            ("[flood]\nip_limt = 3\n", "ip_limt"),
            ("[nonsense]\n", "nonsense"),
            ("[flood]\nwindow = \"soon\"\n", "window"),
            ("[flood]\nwindow = \"0s\"\n", "flood.window"),
            ("[flood]\nexempt = [\"10.0.0.1/8\"]\n", "flood.exempt"),
            ("threshold = nan\n", "threshold"),
            (
                "[dnsbl]\nzones = [{ zone = \"bl.test\", weight = inf }]\n",
                "dnsbl.zones.bl.test",
            ),
            (
                "[uribl]\nzones = [{ zone = \"\", weight = 1.0 }]\n",
                "uribl.zones",
            ),
            ("[dnsbl]\nzones = [{ zone = \"x\" }]\n", "weight"),
            ("[spf]\nfail = nan\n", "spf.fail"),
        ] {
            let err = RuleSetFile::parse(text).unwrap_err();
            let chain = format!("{err} {:?}", err);
            assert!(chain.contains(needle), "{text:?}: {chain}");
        }
    }

    #[test]
    fn load_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = load(&missing, &ctx()).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }));
        assert!(err.to_string().contains("missing.toml"));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "threshold = [").unwrap();
        assert!(matches!(
            load(&bad, &ctx()).unwrap_err(),
            LoadError::Invalid { .. }
        ));
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "threshold = 3.0\n").unwrap();
        assert_eq!(load(&good, &ctx()).unwrap().threshold(), 3.0);
    }
}
