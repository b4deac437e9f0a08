//! Lookups of single VMs, shared: lanes that ask at the same time get one
//! `vm.info` for all of them.
//!
//! Every destruction and every clone looks its VM up right before it acts
//! (see [`crate::ownership`]). With many lanes at once, those lookups
//! arrive together; one govc process per lookup would cost more than the
//! acts themselves. A lookup joins the queue; whoever holds the gate next
//! takes everything queued and asks once. A lookup is never older than the
//! one `vm.info` that was in flight when it was asked, so "right before"
//! still holds: at most one govc call's time before the act.
//!
//! A batch that fails is not shared out: each of its lookups is asked
//! again alone, so every caller gets its own error. Two paths with the same
//! name (in different folders) go in separate calls, since `vm.info`
//! answers by object, not by path.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::oneshot;
use vmw_govc::requests::VmInfo;
use vmw_govc::{Govc, GovcExt, VmRef, parse};

use crate::CloudError;

/// The answer one queued lookup gets.
enum Answer {
    /// What is at the path (nothing: no VM there).
    Found(Option<Box<parse::VmInfo>>),
    /// The shared call failed: ask alone.
    Alone,
}

type Waiting = (VmRef, oneshot::Sender<Answer>);

/// The queue of lookups and the gate of the one call in flight.
#[derive(Default)]
pub(crate) struct Lookups {
    queued: Mutex<Vec<Waiting>>,
    gate: tokio::sync::Mutex<()>,
}

impl Lookups {
    /// The VM at `vm`, if there is one, asked together with any other
    /// lookup waiting at the same time.
    pub(crate) async fn lookup<G: Govc>(
        &self,
        govc: &G,
        vm: &VmRef,
    ) -> Result<Option<parse::VmInfo>, CloudError> {
        loop {
            let (tx, rx) = oneshot::channel();
            self.queue().push((vm.clone(), tx));
            {
                let _gate = self.gate.lock().await;
                let batch = std::mem::take(&mut *self.queue());
                if !batch.is_empty() {
                    answer(govc, batch).await;
                }
            }
            match rx.await {
                Ok(Answer::Found(info)) => return Ok(info.map(|i| *i)),
                Ok(Answer::Alone) => return lookup_alone(govc, vm).await,
                // The lane asking for it was dropped mid-call: ask again.
                Err(_) => continue,
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One `vm.info` of exactly `vm`.
pub(crate) async fn lookup_alone<G: Govc>(
    govc: &G,
    vm: &VmRef,
) -> Result<Option<parse::VmInfo>, CloudError> {
    Ok(govc
        .exec(&VmInfo::new(vm.clone()))
        .await?
        .into_iter()
        .next())
}

/// Answers every lookup of `batch`: one `vm.info` per set of distinct
/// names.
async fn answer<G: Govc>(govc: &G, mut batch: Vec<Waiting>) {
    while !batch.is_empty() {
        // The same path twice is one lookup; the same name at another path
        // waits for the next call.
        let mut paths: BTreeMap<String, VmRef> = BTreeMap::new();
        let (now, later): (Vec<Waiting>, Vec<Waiting>) = batch.into_iter().partition(|(vm, _)| {
            paths
                .entry(vm.name().to_owned())
                .or_insert_with(|| vm.clone())
                == vm
        });
        batch = later;
        let request = VmInfo {
            vms: paths.into_values().collect(),
            extra_config: false,
        };
        match govc.exec(&request).await {
            Ok(infos) => {
                for (vm, tx) in now {
                    let info = infos
                        .iter()
                        .find(|i| i.name == vm.name())
                        .cloned()
                        .map(Box::new);
                    let _ = tx.send(Answer::Found(info));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "a shared lookup failed; each is asked alone");
                for (_, tx) in now {
                    let _ = tx.send(Answer::Alone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vmw_govc::fake::{Inventory, fail, out, scripted};

    use super::*;

    fn vm(path: &str) -> VmRef {
        VmRef::parse(path).unwrap()
    }

    /// A govc whose every call takes a moment, as a process does.
    struct Moment<G>(G);

    impl<G: Govc> Govc for Moment<G> {
        fn run<'a, 'b, 'f>(
            &'a self,
            command: &'b vmw_govc::Command,
        ) -> std::pin::Pin<Box<dyn Future<Output = vmw_govc::fake::Answer> + Send + 'f>>
        where
            'a: 'f,
            'b: 'f,
            Self: 'f,
        {
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                self.0.run(command).await
            })
        }
    }

    #[tokio::test]
    async fn lookups_at_the_same_time_share_calls_and_each_gets_its_own_vm() {
        let inv = Inventory::default();
        inv.add("/DC0/vm/a", "a's");
        inv.add("/DC0/vm/b", "b's");
        inv.add("/DC0/other/a", "the other a's");
        let (govc, calls) = scripted({
            let inv = inv.clone();
            move |c| out(&inv.info_json(c.positional()))
        });
        let govc = Moment(govc);
        let lookups = Lookups::default();
        let paths = [
            "/DC0/vm/a",
            "/DC0/vm/b",
            "/DC0/vm/gone",
            "/DC0/other/a",
            "/DC0/vm/a",
        ];
        let refs: Vec<VmRef> = paths.iter().map(|p| vm(p)).collect();
        let found =
            futures_util::future::join_all(refs.iter().map(|r| lookups.lookup(&govc, r))).await;
        let annotations: Vec<Option<String>> = found
            .into_iter()
            .map(|r| r.unwrap().map(|i| i.annotation))
            .collect();
        assert_eq!(
            annotations,
            [
                Some("a's".to_owned()),
                Some("b's".to_owned()),
                None,
                Some("the other a's".to_owned()),
                Some("a's".to_owned()),
            ]
        );
        // The first asks alone; the others wait and go together, except
        // the second "a", which needs a call of its own.
        assert_eq!(calls.len(), 3, "{:?}", calls.raw());
    }

    #[tokio::test]
    async fn a_shared_lookup_that_fails_is_asked_again_alone() {
        let shared = Arc::new(AtomicUsize::new(0));
        let (govc, calls) = scripted({
            let shared = shared.clone();
            move |c| {
                if c.positional().len() > 1 {
                    shared.fetch_add(1, Ordering::SeqCst);
                    return fail(c, "govc: connection reset by peer\n");
                }
                out(r#"{"virtualMachines":null}"#)
            }
        });
        let govc = Moment(govc);
        let lookups = Lookups::default();
        let refs: Vec<VmRef> = ["/DC0/vm/a", "/DC0/vm/b", "/DC0/vm/c"]
            .iter()
            .map(|p| vm(p))
            .collect();
        let found =
            futures_util::future::join_all(refs.iter().map(|r| lookups.lookup(&govc, r))).await;
        assert!(found.iter().all(|r| matches!(r, Ok(None))), "{found:?}");
        assert_eq!(shared.load(Ordering::SeqCst), 1);
        // a alone, b and c together (failed), then b and c alone.
        assert_eq!(calls.len(), 4, "{:?}", calls.raw());
    }
}
