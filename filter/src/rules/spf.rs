//! `spf`: the client is not allowed to send for the envelope sender's domain (SPF, RFC 7208).
//!
//! The SPF result of the `MAIL FROM` domain for the client IP (for the null sender `<>`, of the
//! HELO name, as RFC 7208 section 2.4 says) is found before the rules run, by mail-auth on the
//! filter's shared resolver ([`crate::gather`]). The old service rejected on `fail` only, and so
//! do the default weights: `fail` alone reaches the threshold, `softfail` ("probably not, but do
//! not reject") adds a little, and `neutral`, `none`, `pass` and the errors add nothing (a
//! `temperror`, an unanswered lookup, is never held against the sender).

use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};
use crate::gather::SpfVerdict;

/// `[spf]` in the rule file: one weight per SPF result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpfSettings {
    pub enabled: bool,
    pub fail: f64,
    pub softfail: f64,
    pub neutral: f64,
    /// The domain's SPF record is broken.
    pub permerror: f64,
}

impl Default for SpfSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            fail: 5.0,
            softfail: 1.0,
            neutral: 0.0,
            permerror: 0.0,
        }
    }
}

pub struct Spf {
    settings: SpfSettings,
}

impl Spf {
    pub fn new(settings: SpfSettings) -> Self {
        Self { settings }
    }
}

impl Rule for Spf {
    fn name(&self) -> &'static str {
        "spf"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let spf = input.facts.dns.spf.as_ref()?;
        let s = &self.settings;
        let weight = match spf.result {
            SpfVerdict::Fail => s.fail,
            SpfVerdict::SoftFail => s.softfail,
            SpfVerdict::Neutral => s.neutral,
            SpfVerdict::PermError => s.permerror,
            SpfVerdict::Pass | SpfVerdict::None | SpfVerdict::TempError => 0.0,
        };
        (weight != 0.0).then(|| {
            Hit::new(
                weight,
                format!(
                    "SPF {} for {} from {}",
                    spf.result, spf.domain, input.envelope.client_ip
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::gather::SpfFacts;
    use crate::rules::test_support::envelope;

    fn check(result: SpfVerdict) -> Option<Hit> {
        let mut facts = Facts::default();
        facts.dns.spf = Some(SpfFacts {
            domain: "b.example".into(),
            result,
        });
        let env = envelope("a@b.example");
        Spf::new(SpfSettings::default()).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        })
    }

    #[test]
    fn fail_rejects_softfail_counts_a_little_the_rest_nothing() {
        let fail = check(SpfVerdict::Fail).unwrap();
        assert_eq!(fail.score, 5.0);
        assert_eq!(fail.reason, "SPF fail for b.example from 192.0.2.1");
        assert_eq!(check(SpfVerdict::SoftFail).unwrap().score, 1.0);
        for quiet in [
            SpfVerdict::Pass,
            SpfVerdict::Neutral,
            SpfVerdict::None,
            SpfVerdict::TempError,
            SpfVerdict::PermError,
        ] {
            assert_eq!(check(quiet), None, "{quiet}");
        }
    }
}
