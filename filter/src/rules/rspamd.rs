//! `rspamd`: rspamd's verdict on the message, when an rspamd is configured.
//!
//! rspamd is asked before the rules run ([`crate::rspamd`], `MAILDROP_RSPAMD_URL`); without a URL,
//! or when it gave no answer in time, there are no facts and this rule has nothing to say. With an
//! answer, the rule's score is the weight of the *action* rspamd chose plus `score_weight` times
//! rspamd's own score:
//!
//! `score = <weight of rspamd's action> + score_weight × rspamd's score`
//!
//! The defaults trust rspamd's decision and not its scale (its scores and thresholds are its own,
//! 15 to reject by default): `reject` alone reaches our default threshold, `add header` and
//! `rewrite subject` (rspamd's "probably spam") add half of it, `greylist` and `soft reject` (rspamd
//! asking to retry later, which a disposable inbox does not do) add nothing, and `score_weight` is
//! 0. Setting the action weights to 0 and `score_weight` to, say, `0.33` uses rspamd's score
//! instead. The reason names rspamd's action, its score and threshold and its heaviest symbols.

use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};

/// How many of rspamd's symbols a reason names.
pub const REASON_SYMBOLS: usize = 5;

/// `[rspamd]` in the rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RspamdSettings {
    /// Ask rspamd (when `MAILDROP_RSPAMD_URL` is set) and score its answer.
    pub enabled: bool,
    /// Multiplies rspamd's score into ours.
    pub score_weight: f64,
    /// Weights of rspamd's actions.
    pub reject: f64,
    pub soft_reject: f64,
    pub rewrite_subject: f64,
    pub add_header: f64,
    pub greylist: f64,
}

impl Default for RspamdSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            score_weight: 0.0,
            reject: 5.0,
            soft_reject: 0.0,
            rewrite_subject: 2.5,
            add_header: 2.5,
            greylist: 0.0,
        }
    }
}

impl RspamdSettings {
    /// The weight of one of rspamd's actions (`no action` and actions we do not know: 0).
    pub fn action_weight(&self, action: &str) -> f64 {
        match action {
            "reject" => self.reject,
            "soft reject" => self.soft_reject,
            "rewrite subject" => self.rewrite_subject,
            "add header" => self.add_header,
            "greylist" => self.greylist,
            _ => 0.0,
        }
    }
}

pub struct RspamdRule {
    settings: RspamdSettings,
}

impl RspamdRule {
    pub fn new(settings: RspamdSettings) -> Self {
        Self { settings }
    }
}

impl Rule for RspamdRule {
    fn name(&self) -> &'static str {
        "rspamd"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let r = input.facts.rspamd.as_ref()?;
        let score = self.settings.action_weight(&r.action) + self.settings.score_weight * r.score;
        if score == 0.0 || !score.is_finite() {
            return None;
        }
        // The symbols that scored; when none did (a pre-result such as GTUBE decides the action
        // with a symbol of score 0), the symbols by name.
        let mut symbols: Vec<String> = r
            .symbols
            .iter()
            .filter(|s| s.score != 0.0)
            .take(REASON_SYMBOLS)
            .map(|s| format!("{} ({})", s.name, s.score))
            .collect();
        if symbols.is_empty() {
            symbols = r
                .symbols
                .iter()
                .take(REASON_SYMBOLS)
                .map(|s| s.name.clone())
                .collect();
        }
        let mut reason = format!(
            "rspamd says {} at {}/{}",
            r.action, r.score, r.required_score
        );
        if let Some(message) = r.message.as_deref().filter(|m| !m.is_empty()) {
            reason.push_str(&format!(" ({message})"));
        }
        if !symbols.is_empty() {
            reason.push_str(": ");
            reason.push_str(&symbols.join(", "));
        }
        Some(Hit::new(score, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::rspamd::{RspamdFacts, Symbol};
    use crate::rules::test_support::envelope;

    fn check(settings: RspamdSettings, action: &str, score: f64) -> Option<Hit> {
        let facts = Facts {
            rspamd: Some(RspamdFacts {
                score,
                required_score: 15.0,
                action: action.into(),
                symbols: (0..7)
                    .map(|i| Symbol {
                        name: format!("SYM_{i}"),
                        score: f64::from(7 - i),
                    })
                    .chain(std::iter::once(Symbol {
                        name: "ZERO".into(),
                        score: 0.0,
                    }))
                    .collect(),
                message: None,
            }),
            ..Facts::default()
        };
        let env = envelope("a@b.example");
        RspamdRule::new(settings).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        })
    }

    #[test]
    fn a_reject_reaches_the_threshold_and_names_action_score_and_top_symbols() {
        let hit = check(RspamdSettings::default(), "reject", 1001.0).unwrap();
        assert_eq!(hit.score, 5.0);
        assert_eq!(
            hit.reason,
            "rspamd says reject at 1001/15: SYM_0 (7), SYM_1 (6), SYM_2 (5), SYM_3 (4), SYM_4 (3)"
        );
        assert_eq!(hit.block_client, None);
    }

    #[test]
    fn each_action_has_its_weight_and_no_action_is_no_hit() {
        let s = RspamdSettings::default();
        assert_eq!(check(s.clone(), "add header", 8.5).unwrap().score, 2.5);
        assert_eq!(check(s.clone(), "rewrite subject", 9.0).unwrap().score, 2.5);
        assert_eq!(check(s.clone(), "greylist", 5.0), None);
        assert_eq!(check(s.clone(), "soft reject", 5.0), None);
        assert_eq!(check(s, "no action", 1.0), None);
    }

    #[test]
    fn the_score_weight_scales_rspamds_score() {
        let s = RspamdSettings {
            score_weight: 0.5,
            add_header: 0.0,
            ..RspamdSettings::default()
        };
        assert_eq!(check(s.clone(), "add header", 8.0).unwrap().score, 4.0);
        assert_eq!(check(s.clone(), "no action", -2.0).unwrap().score, -1.0);
        assert_eq!(check(s, "reject", 20.0).unwrap().score, 15.0);
    }

    #[test]
    fn a_pre_result_names_its_symbols_and_rspamds_message() {
        let facts = Facts {
            rspamd: Some(RspamdFacts {
                score: 15.0,
                required_score: 15.0,
                action: "reject".into(),
                symbols: vec![Symbol {
                    name: "GTUBE".into(),
                    score: 0.0,
                }],
                message: Some("Gtube pattern".into()),
            }),
            ..Facts::default()
        };
        let env = envelope("a@b.example");
        let hit = RspamdRule::new(RspamdSettings::default())
            .check(&Inspection {
                envelope: &env,
                message: None,
                raw: b"",
                facts: &facts,
            })
            .unwrap();
        assert_eq!(
            hit.reason,
            "rspamd says reject at 15/15 (Gtube pattern): GTUBE"
        );
    }

    #[test]
    fn without_facts_nothing_is_said() {
        let env = envelope("a@b.example");
        let facts = Facts::default();
        let hit = RspamdRule::new(RspamdSettings::default()).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        });
        assert_eq!(hit, None);
    }
}
