//! Lookups of single VMs, shared: lanes that ask at the same time get one
//! `object.collect` for all of them.
//!
//! Every destruction, and every clone of a path not known to be free (see
//! [`crate::Cloud::launch`]'s numbering), looks its VM up right before it
//! acts (see [`crate::ownership`]). With many lanes at once, those lookups
//! arrive together; one govc process per lookup would cost more than the
//! acts themselves. A lookup joins the queue; whoever holds the gate next
//! takes everything queued and asks once. A lookup is never older than the
//! one call that was in flight when it was asked, so "right before" still
//! holds: at most one govc call's time before the act.
//!
//! A shared call reads only what ownership checks need (name, id, marker,
//! template flag, power state: [`VmMarks`]), not the whole configuration
//! `vm.info` loads for each VM. A batch that fails is not shared out: each of its
//! lookups is asked again alone, so every caller gets its own error.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::oneshot;
use vmw_govc::requests::{VmInfo, VmMarks};
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
        match self.ask(govc, vm).await {
            Answer::Found(info) => Ok(info.map(|i| *i)),
            Answer::Alone => lookup_alone(govc, vm).await,
        }
    }

    async fn ask<G: Govc>(&self, govc: &G, vm: &VmRef) -> Answer {
        loop {
            let (tx, rx) = oneshot::channel();
            self.queue().push((vm.clone(), tx));
            // Lanes asking in the same moment join this call.
            tokio::task::yield_now().await;
            {
                let _gate = self.gate.lock().await;
                let batch = std::mem::take(&mut *self.queue());
                if !batch.is_empty() {
                    answer(govc, batch).await;
                }
            }
            match rx.await {
                Ok(answer) => return answer,
                // The lane asking for it was dropped mid-call: ask again.
                Err(_) => continue,
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What is at exactly `vm`: one `vm.info` of its path.
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

/// Answers every lookup of `batch`: one alone is asked alone (`vm.info`
/// of its path); several are answered by one `object.collect` of each
/// folder they are in. That
/// collects the folder's subfolders too, so a name found more than once
/// is asked alone; a name found once is the VM at the path, or, when there
/// is none, one in a subfolder, which nothing mistakes for it: every act
/// names the path, and a path that is not there is looked up again alone.
async fn answer<G: Govc>(govc: &G, batch: Vec<Waiting>) {
    if let [(vm, _)] = batch.as_slice() {
        let vm = vm.clone();
        let found = lookup_alone(govc, &vm).await;
        for (_, tx) in batch {
            let _ = tx.send(match &found {
                Ok(info) => Answer::Found(info.clone().map(Box::new)),
                Err(_) => Answer::Alone,
            });
        }
        return;
    }
    let mut folders: BTreeMap<String, Vec<Waiting>> = BTreeMap::new();
    for w in batch {
        folders.entry(w.0.folder().to_owned()).or_default().push(w);
    }
    for (folder, waiting) in folders {
        match govc.exec(&VmMarks { folder }).await {
            Ok(found) => {
                for (vm, tx) in waiting {
                    let mut named = found.iter().filter(|i| i.name == vm.name());
                    let answer = match (named.next(), named.next()) {
                        (None, _) => Answer::Found(None),
                        (Some(one), None) => Answer::Found(Some(Box::new(one.clone()))),
                        (Some(_), Some(_)) => Answer::Alone,
                    };
                    let _ = tx.send(answer);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "a shared lookup failed; each is asked alone");
                for (_, tx) in waiting {
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
        // A "b" in a subfolder too: the folder's call sees two.
        inv.add("/DC0/vm/sub/b", "the other b's");
        let (govc, calls) = scripted({
            let inv = inv.clone();
            move |c| match c.name() {
                "object.collect" => out(&inv.marks_json(&c.positional()[0])),
                _ => out(&inv.info_json(c.positional())),
            }
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
        // Asked in the same moment, they go together: one call for each
        // folder, then "b", found twice there, alone.
        assert_eq!(
            calls.names(),
            ["object.collect", "object.collect", "vm.info"],
            "{:?}",
            calls.raw()
        );
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
        // All three together (failed), then each alone.
        assert_eq!(calls.len(), 4, "{:?}", calls.raw());
    }
}
