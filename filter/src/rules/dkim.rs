//! `dkim`: the message carries DKIM signatures (RFC 6376) and none of them verifies.
//!
//! Every `DKIM-Signature` is verified before the rules run, by mail-auth on the filter's shared
//! resolver ([`crate::gather`]): the key is fetched from `<selector>._domainkey.<domain>` and the
//! signed headers and body hash checked. A message with no signature is not suspicious by itself
//! (much legitimate mail is unsigned) and gets nothing here; one whose every signature *fails*
//! (altered in transit, or forged) gets `fail`. A signature whose key could not be fetched
//! (`temperror`) does not count either way. `pass` (default 0) may be set negative to vouch for
//! signed mail.

use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};
use crate::gather::AuthVerdict;

/// `[dkim]` in the rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimSettings {
    pub enabled: bool,
    /// Signatures present, none verifies, at least one fails.
    pub fail: f64,
    /// At least one signature verifies.
    pub pass: f64,
}

impl Default for DkimSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            fail: 2.0,
            pass: 0.0,
        }
    }
}

pub struct Dkim {
    settings: DkimSettings,
}

impl Dkim {
    pub fn new(settings: DkimSettings) -> Self {
        Self { settings }
    }
}

impl Rule for Dkim {
    fn name(&self) -> &'static str {
        "dkim"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let dkim = input.facts.dns.dkim.as_ref()?;
        let describe = |verdict: AuthVerdict| {
            dkim.signatures
                .iter()
                .filter(|s| s.result == verdict)
                .map(|s| format!("d={} s={} ({})", s.domain, s.selector, s.detail))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if dkim
            .signatures
            .iter()
            .any(|s| s.result == AuthVerdict::Pass)
        {
            return (self.settings.pass != 0.0).then(|| {
                Hit::new(
                    self.settings.pass,
                    format!("DKIM pass: {}", describe(AuthVerdict::Pass)),
                )
            });
        }
        let fails = dkim
            .signatures
            .iter()
            .any(|s| matches!(s.result, AuthVerdict::Fail | AuthVerdict::PermError));
        if !fails || self.settings.fail == 0.0 {
            return None;
        }
        let mut failed = describe(AuthVerdict::Fail);
        let broken = describe(AuthVerdict::PermError);
        if !broken.is_empty() {
            if !failed.is_empty() {
                failed.push_str(", ");
            }
            failed.push_str(&broken);
        }
        Some(Hit::new(self.settings.fail, format!("DKIM fail: {failed}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::gather::{DkimFacts, DkimSignature};
    use crate::rules::test_support::envelope;

    fn sig(domain: &str, result: AuthVerdict, detail: &str) -> DkimSignature {
        DkimSignature {
            domain: domain.into(),
            selector: "s1".into(),
            result,
            detail: detail.into(),
        }
    }

    fn check(settings: DkimSettings, signatures: Vec<DkimSignature>) -> Option<Hit> {
        let mut facts = Facts::default();
        facts.dns.dkim = Some(DkimFacts { signatures });
        let env = envelope("a@b.example");
        Dkim::new(settings).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        })
    }

    #[test]
    fn failing_signatures_count_with_their_domain_and_cause() {
        let hit = check(
            DkimSettings::default(),
            vec![sig("b.example", AuthVerdict::Fail, "body hash mismatch")],
        )
        .unwrap();
        assert_eq!(hit.score, 2.0);
        assert_eq!(
            hit.reason,
            "DKIM fail: d=b.example s=s1 (body hash mismatch)"
        );
    }

    #[test]
    fn one_passing_signature_or_none_at_all_is_no_finding() {
        let d = DkimSettings::default();
        assert_eq!(check(d.clone(), vec![]), None);
        assert_eq!(
            check(
                d.clone(),
                vec![
                    sig("relay.example", AuthVerdict::Fail, "x"),
                    sig("b.example", AuthVerdict::Pass, "pass"),
                ]
            ),
            None
        );
        assert_eq!(
            check(d, vec![sig("b.example", AuthVerdict::TempError, "timeout")]),
            None
        );
    }

    #[test]
    fn a_negative_pass_weight_vouches() {
        let hit = check(
            DkimSettings {
                pass: -1.0,
                ..DkimSettings::default()
            },
            vec![sig("b.example", AuthVerdict::Pass, "pass")],
        )
        .unwrap();
        assert_eq!(hit.score, -1.0);
        assert!(hit.reason.starts_with("DKIM pass: d=b.example"));
    }
}
