//! The sync plan: which fields of which companies differ between what the mapping wants
//! and what the CRM last accepted. Pure: scores and stored state in, a plan out.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::mapping::{Desired, Mapping};
use crate::scoring::{CompanyScore, Stage};
use crate::store::{AcceptedState, Failure};

/// One company's pending change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanItem {
    pub domain: String,
    pub stage: Stage,
    /// The stage the CRM last accepted; differs from `stage` when the stage changed.
    pub accepted_stage: Option<Stage>,
    /// Changed fields only: their values as last accepted (`None`: never written) and now.
    pub before: Desired,
    pub after: Desired,
    /// Fields never accepted before (first write of this record).
    pub new_record: bool,
}

impl PlanItem {
    pub fn stage_changed(&self) -> bool {
        self.accepted_stage != Some(self.stage)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SyncPlan {
    pub items: Vec<PlanItem>,
    /// Companies left out because their record is parked as dead.
    pub skipped_dead: Vec<String>,
}

impl SyncPlan {
    pub fn changed_fields(&self) -> usize {
        self.items.iter().map(|i| i.after.len()).sum()
    }
}

/// Plans the changes of every company against the accepted state. A company is in
/// scope when its stage is one the mapping pushes or the CRM already holds it.
pub fn plan_changes(
    scores: &[CompanyScore],
    mapping: &Mapping,
    accepted: &HashMap<String, AcceptedState>,
    failures: &HashMap<String, Failure>,
) -> SyncPlan {
    let mut plan = SyncPlan::default();
    for score in scores {
        let state = accepted.get(&score.domain);
        if state.is_none() && !mapping.pushes(score.stage) {
            continue;
        }
        let desired = mapping.desired(score);
        let empty = Desired::new();
        let held = state.map(|s| &s.fields).unwrap_or(&empty);
        let mut before = Desired::new();
        let mut after = Desired::new();
        for (field, value) in desired {
            let old = held.get(&field);
            if old == Some(&value) {
                continue;
            }
            // Clearing a field we never wrote changes nothing.
            if value.is_null() && old.is_none() {
                continue;
            }
            before.insert(field.clone(), old.cloned().unwrap_or(Value::Null));
            after.insert(field, value);
        }
        let accepted_stage = state.and_then(|s| s.stage);
        if after.is_empty() && accepted_stage == Some(score.stage) {
            continue;
        }
        if failures.get(&score.domain).is_some_and(|f| f.dead) {
            plan.skipped_dead.push(score.domain.clone());
            continue;
        }
        plan.items.push(PlanItem {
            domain: score.domain.clone(),
            stage: score.stage,
            accepted_stage,
            before,
            after,
            new_record: state.is_none(),
        });
    }
    plan.items.sort_by(|a, b| a.domain.cmp(&b.domain));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use serde_json::json;

    fn score(domain: &str, stage: Stage, micro: i64) -> CompanyScore {
        let d = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        CompanyScore {
            domain: domain.into(),
            stage,
            peak_stage: stage,
            stage_since: d,
            score: micro,
            first_seen: d,
            last_seen: d,
            downloads_30d: 0,
            views_30d: 0,
            community_30d: 0,
            telemetry_30d: 0,
            actors_90d: 0,
            versions_90d: 0,
            upgrading: false,
            churn_risk: false,
            events_30d: 0,
            actors_30d: 0,
            events_mom: None,
            events_wow: None,
            scarf_stage: None,
            scarf_stage_since: None,
            insight: None,
        }
    }

    fn mapping() -> Mapping {
        serde_saphyr::from_str(
            "object: companies\nmatch: { crm_field: domain }\nstages: [experimentation, ongoing_usage, inactive]\n\
             fields:\n  oql_stage: { from: stage }\n  oql_score: { from: score, round: 0 }\n  oql_mom: { from: events_mom }\n",
        )
        .unwrap()
    }

    fn accepted(fields: serde_json::Value, stage: Stage) -> AcceptedState {
        AcceptedState { fields: serde_json::from_value(fields).unwrap(), stage: Some(stage), changes: 1 }
    }

    #[test]
    fn only_changed_fields_of_changed_companies_are_planned() {
        let scores = [
            score("same.com", Stage::Experimentation, 50_000_000),
            score("moved.com", Stage::OngoingUsage, 50_000_000),
            score("new.com", Stage::Experimentation, 41_000_000),
            score("early.com", Stage::Investigation, 20_000_000),
        ];
        let mut state = HashMap::new();
        state.insert("same.com".into(), accepted(json!({"oql_stage": "experimentation", "oql_score": 50}), Stage::Experimentation));
        state.insert("moved.com".into(), accepted(json!({"oql_stage": "experimentation", "oql_score": 50}), Stage::Experimentation));
        let plan = plan_changes(&scores, &mapping(), &state, &HashMap::new());
        let domains: Vec<&str> = plan.items.iter().map(|i| i.domain.as_str()).collect();
        assert_eq!(domains, ["moved.com", "new.com"], "unchanged and not-pushed companies stay out");
        let moved = &plan.items[0];
        assert_eq!(serde_json::to_value(&moved.after).unwrap(), json!({"oql_stage": "ongoing_usage"}));
        assert_eq!(serde_json::to_value(&moved.before).unwrap(), json!({"oql_stage": "experimentation"}));
        assert!(moved.stage_changed());
        assert_eq!(plan.items[1].after.len(), 2, "events_mom has no value and is left alone");
    }

    #[test]
    fn a_company_the_crm_holds_stays_synced_outside_the_pushed_stages() {
        let scores = [score("cold.com", Stage::Investigation, 12_000_000)];
        let mut state = HashMap::new();
        state.insert("cold.com".into(), accepted(json!({"oql_stage": "experimentation", "oql_score": 45}), Stage::Experimentation));
        let plan = plan_changes(&scores, &mapping(), &state, &HashMap::new());
        assert_eq!(plan.items.len(), 1);
        assert_eq!(plan.items[0].after["oql_stage"], "investigation");
    }

    #[test]
    fn dead_records_are_skipped_and_named() {
        let scores = [score("dead.com", Stage::Experimentation, 50_000_000)];
        let mut failures = HashMap::new();
        failures.insert("dead.com".into(), Failure { attempts: 5, dead: true, last_error: "x".into() });
        let plan = plan_changes(&scores, &mapping(), &HashMap::new(), &failures);
        assert!(plan.items.is_empty());
        assert_eq!(plan.skipped_dead, ["dead.com"]);
    }
}
