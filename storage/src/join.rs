//! Futures run together on the current task: a shard issues several disk reads at once (a
//! chunk and its record, the packs recovery reads) without spawning a task per read.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

/// Both outputs, the two futures polled together.
pub(crate) async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.expect("ready"), rb.expect("ready"))
}

/// Every output in order, all the futures polled together (keep the set small: each wake
/// polls every unfinished one).
pub(crate) async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Option<std::pin::Pin<Box<F>>>> =
        futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, o) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *o = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn outputs_come_back_in_order_and_the_futures_run_together() {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let running = Cell::new(0u32);
            let most = Cell::new(0u32);
            let job = |ms: u64, v: u32| {
                let (running, most) = (&running, &most);
                async move {
                    running.set(running.get() + 1);
                    most.set(most.get().max(running.get()));
                    monoio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    running.set(running.get() - 1);
                    v
                }
            };
            let got = join_all(vec![job(30, 1), job(10, 2), job(20, 3)]).await;
            assert_eq!(got, vec![1, 2, 3]);
            assert_eq!(most.get(), 3, "all three were in flight at once");
            most.set(0);
            let (a, b) = join2(job(20, 7), job(5, 8)).await;
            assert_eq!((a, b), (7, 8));
            assert_eq!(most.get(), 2);
        });
    }
}
