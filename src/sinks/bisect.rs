//! Splitting a refused batch. HubSpot (400 VALIDATION_ERROR) and Salesforce (400
//! JSON_PARSER_ERROR) refuse a whole batch for one record's bad value, so the batch is
//! halved until the bad records stand alone and the good ones land: a batch of n with
//! one bad record costs about 2·log2(n) more calls.
//!
//! Only value errors are worth splitting. A refusal that names the configuration (a
//! field the CRM lacks) fails every half alike, and splitting 200 records that way
//! costs about 400 calls: sinks report those as `SinkError::Config`, which stops the run.

use super::{SinkError, WriteOutcome, WriteRecord};

/// The CRM's answer to one batch request.
pub enum Sent {
    /// One outcome per record, in the batch's order.
    Answered(Vec<WriteOutcome>),
    /// The whole request was refused for a value in it; the CRM's message.
    Refused(String),
}

/// A sink that sends one batch request and reads its answer.
#[allow(async_fn_in_trait)]
pub trait BatchSender {
    async fn send_batch(&mut self, batch: &[WriteRecord]) -> Result<Sent, SinkError>;
}

/// Writes a batch; refused parts are halved until each refused record fails alone.
pub async fn write_bisecting<S: BatchSender>(sender: &mut S, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; batch.len()];
    // Ranges still to send; the left half first, so records land in batch order.
    let mut todo = vec![(0, batch.len())];
    while let Some((lo, hi)) = todo.pop() {
        if lo == hi {
            continue;
        }
        match sender.send_batch(&batch[lo..hi]).await? {
            Sent::Answered(answer) => {
                if answer.len() != hi - lo {
                    return Err(SinkError::Api(format!("the CRM answered {} outcomes for {} records", answer.len(), hi - lo)));
                }
                for (slot, outcome) in outcomes[lo..hi].iter_mut().zip(answer) {
                    *slot = Some(outcome);
                }
            }
            Sent::Refused(message) if hi - lo == 1 => outcomes[lo] = Some(WriteOutcome::Failed(message)),
            Sent::Refused(_) => {
                let mid = lo + (hi - lo) / 2;
                todo.push((mid, hi));
                todo.push((lo, mid));
            }
        }
    }
    Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| WriteOutcome::Failed("not sent".into()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refuses any request carrying a domain starting with `bad`.
    struct Picky {
        calls: usize,
    }

    impl BatchSender for Picky {
        async fn send_batch(&mut self, batch: &[WriteRecord]) -> Result<Sent, SinkError> {
            self.calls += 1;
            if let Some(bad) = batch.iter().find(|r| r.domain.starts_with("bad")) {
                return Ok(Sent::Refused(format!("{} has a bad value", bad.domain)));
            }
            Ok(Sent::Answered(batch.iter().map(|r| WriteOutcome::Written { crm_id: r.domain.clone(), created: false }).collect()))
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn record(domain: &str) -> WriteRecord {
        WriteRecord {
            domain: domain.into(),
            crm_id: Some("1".into()),
            fields: Default::default(),
            desired: Default::default(),
            event: serde_json::Value::Null,
            stage_change: None,
            new_record: false,
            company_name: None,
        }
    }

    #[test]
    fn a_bad_record_fails_alone_and_the_rest_lands_in_order() {
        let batch: Vec<WriteRecord> = (0..16).map(|i| record(&if i == 11 { "bad11.com".into() } else { format!("c{i}.com") })).collect();
        let mut picky = Picky { calls: 0 };
        let out = block_on(write_bisecting(&mut picky, &batch)).unwrap();
        for (i, o) in out.iter().enumerate() {
            match o {
                WriteOutcome::Written { crm_id, .. } => assert_eq!(crm_id, &batch[i].domain),
                WriteOutcome::Failed(m) => assert_eq!((i, m.as_str()), (11, "bad11.com has a bad value")),
                WriteOutcome::Gone(_) => panic!("{o:?}"),
            }
        }
        assert_eq!(picky.calls, 1 + 2 * 4, "one refused request, then two halves at each of 4 levels");
    }

    #[test]
    fn a_batch_without_refusal_is_one_call() {
        let batch: Vec<WriteRecord> = (0..5).map(|i| record(&format!("c{i}.com"))).collect();
        let mut picky = Picky { calls: 0 };
        let out = block_on(write_bisecting(&mut picky, &batch)).unwrap();
        assert_eq!((out.len(), picky.calls), (5, 1));
    }
}
