//! `dmarc`: the `From` domain publishes a DMARC policy (RFC 7489) and the message fails it.
//!
//! DMARC ties the address a reader sees (`From:`) to what was authenticated: the message passes
//! when SPF passed for a domain *aligned* with the `From` domain (the same organisational domain,
//! under relaxed alignment) or a DKIM signature of an aligned domain verified. mail-auth does the
//! policy lookup and the alignment before the rules run ([`crate::gather`]); this rule weighs a
//! failure by what the domain's owner asked for: `p=reject` weighs `reject`, `p=quarantine`
//! `quarantine`, `p=none` (monitoring only) `none`. A domain without a policy, or a lookup that
//! found no answer, gets nothing.

use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};
use crate::gather::{AuthVerdict, DmarcPolicy};

/// `[dmarc]` in the rule file: the weight of a failure, by the domain's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DmarcSettings {
    pub enabled: bool,
    pub reject: f64,
    pub quarantine: f64,
    pub none: f64,
}

impl Default for DmarcSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            reject: 5.0,
            quarantine: 3.0,
            none: 0.0,
        }
    }
}

pub struct Dmarc {
    settings: DmarcSettings,
}

impl Dmarc {
    pub fn new(settings: DmarcSettings) -> Self {
        Self { settings }
    }
}

impl Rule for Dmarc {
    fn name(&self) -> &'static str {
        "dmarc"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let dmarc = input.facts.dns.dmarc.as_ref()?;
        let weight = match dmarc.policy {
            DmarcPolicy::Reject => self.settings.reject,
            DmarcPolicy::Quarantine => self.settings.quarantine,
            DmarcPolicy::None => self.settings.none,
            DmarcPolicy::NoRecord => return None,
        };
        let (spf, dkim) = (dmarc.spf, dmarc.dkim);
        let passed = spf == AuthVerdict::Pass || dkim == AuthVerdict::Pass;
        // Only a real failure counts: if either side could not be checked, the message might
        // have passed through it.
        let unsure = [spf, dkim].contains(&AuthVerdict::TempError);
        if passed || unsure || weight == 0.0 {
            return None;
        }
        Some(Hit::new(
            weight,
            format!(
                "DMARC fail for {} (p={}; aligned SPF {spf}, aligned DKIM {dkim})",
                dmarc.domain, dmarc.policy
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::gather::DmarcFacts;
    use crate::rules::test_support::envelope;

    fn check(policy: DmarcPolicy, spf: AuthVerdict, dkim: AuthVerdict) -> Option<Hit> {
        let mut facts = Facts::default();
        facts.dns.dmarc = Some(DmarcFacts {
            domain: "bank.example".into(),
            policy,
            spf,
            dkim,
        });
        let env = envelope("a@b.example");
        Dmarc::new(DmarcSettings::default()).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        })
    }

    #[test]
    fn a_failure_weighs_what_the_policy_asks() {
        use AuthVerdict::{Fail, None as Absent};
        let hit = check(DmarcPolicy::Reject, Fail, Absent).unwrap();
        assert_eq!(hit.score, 5.0);
        assert_eq!(
            hit.reason,
            "DMARC fail for bank.example (p=reject; aligned SPF fail, aligned DKIM none)"
        );
        assert_eq!(
            check(DmarcPolicy::Quarantine, Fail, Fail).unwrap().score,
            3.0
        );
        assert_eq!(check(DmarcPolicy::None, Fail, Fail), None);
        assert_eq!(check(DmarcPolicy::NoRecord, Fail, Fail), None);
    }

    #[test]
    fn one_aligned_pass_or_an_unanswered_check_is_no_finding() {
        use AuthVerdict::{Fail, Pass, TempError};
        assert_eq!(check(DmarcPolicy::Reject, Pass, Fail), None);
        assert_eq!(check(DmarcPolicy::Reject, Fail, Pass), None);
        assert_eq!(check(DmarcPolicy::Reject, TempError, Fail), None);
    }
}
