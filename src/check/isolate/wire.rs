//! The wire between a child and its parent: the run's configuration, which
//! the parent writes once, and the outcome line each child prints.

use serde::Deserialize as _;
use serde_json::Value;

use crate::check::{CheckConfig, Verdict};

/// The configuration a child needs, as JSON ([`CheckConfig`]'s serde
/// form; the isolation settings stay with the parent).
pub(crate) fn config_json(c: &CheckConfig) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// Reads what [`config_json`] wrote.
///
/// # Errors
/// [`crate::Error::ChildConfig`] naming the field that is missing or of
/// the wrong type.
pub(crate) fn config_from_json(v: &Value) -> crate::Result<CheckConfig> {
    CheckConfig::deserialize(v).map_err(|e| crate::Error::ChildConfig(e.to_string()))
}

/// A child's outcome line, after [`OUTCOME_MARK`].
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Outcome {
    pub verdict: Verdict,
    /// The worst error / allowed error: a number, or `"inf"` (JSON has no
    /// infinity) for a failed exact expectation.
    #[serde(with = "ratio_wire")]
    pub error_ratio: Option<f64>,
}

/// An error ratio on the wire: a number, or `"inf"`.
mod ratio_wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Number(f64),
        Text(String),
    }

    pub(crate) fn serialize<S: Serializer>(r: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Some(r) if r.is_infinite() => Wire::Text("inf".into()).serialize(s),
            Some(r) => Wire::Number(*r).serialize(s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(match Option::<Wire>::deserialize(d)? {
            Some(Wire::Number(r)) => Some(r),
            Some(Wire::Text(t)) if t == "inf" => Some(f64::INFINITY),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The wire between a child and its parent.

    use std::path::PathBuf;

    use super::*;
    use crate::check::isolate::Isolation;
    use crate::check::{Evidence, Tolerance};

    #[test]
    fn a_config_crosses_whole_but_for_isolation() {
        let c = CheckConfig {
            models: vec![PathBuf::from("/m/a.onnx")],
            cases: 7,
            seconds: 2.5,
            tolerance: Some(Tolerance {
                abs: 1e-3,
                rel: 1e-2,
            }),
            scratch: "/tmp/s".into(),
            only: vec!["seed".into()],
            regressions: Some("/r.txt".into()),
            replay: None,
            stress_ms: 50,
            stress_cap_ms: 1000,
            min_power: crate::history::Power::MINIMUM,
            allow_inconclusive: true,
            fail_on_skip: false,
            live: false,
            plots: Some("/p".into()),
            isolation: Some(Isolation::new(
                "/bin/true",
                crate::spec::EngineSpec::Reference,
            )),
        };
        let back = config_from_json(&config_json(&c)).unwrap();
        assert!(back.isolation.is_none());
        assert_eq!(
            format!(
                "{:?}",
                CheckConfig {
                    isolation: None,
                    ..c
                }
            ),
            format!("{back:?}")
        );
        let mut v = config_json(&back);
        v.as_object_mut().unwrap().remove("cases");
        let e = config_from_json(&v).unwrap_err();
        assert!(e.to_string().contains("cases"), "{e}");
    }

    #[test]
    fn an_outcome_crosses_with_its_verdict_and_an_infinite_ratio() {
        for (verdict, ratio) in [
            (Verdict::Pass("ok".into()), Some(0.25)),
            (
                Verdict::Fail(Evidence {
                    step: "refit".into(),
                    expected: "9".into(),
                    observed: "0".into(),
                }),
                Some(f64::INFINITY),
            ),
            (Verdict::Skip("no model".into()), None),
        ] {
            let line = serde_json::to_string(&Outcome {
                verdict: verdict.clone(),
                error_ratio: ratio,
            })
            .unwrap();
            let back: Outcome = serde_json::from_str(&line).unwrap();
            assert_eq!((back.verdict, back.error_ratio), (verdict, ratio), "{line}");
        }
    }
}
