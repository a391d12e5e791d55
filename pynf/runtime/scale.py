"""Scaling a stage while traffic flows (`pynf ctl scale STAGE REPLICAS`,
Mailbox.scale): its replica count changes, each flow keeps its state and
order.

Packets reach a stage's replicas through its upstream stage's rings, by
an indirection table: bucket hash5(5-tuple) & (BUCKETS - 1) -> replica (as
RSS++ moves RSS buckets between cores). A stage is made with room for
`--scale-max` replicas; the ones not in use are parked. Scaling:

  1. plans the new table: a new replica takes an equal share of buckets
     from the replicas holding most; a removed replica's buckets go to the
     ones holding fewest. Only the buckets that change owner move;
  2. pauses the upstream stage between bursts (its input waits in its
     rings or NIC queues: nothing is dropped), and waits until the stage's
     input rings are empty, so no packet of a moving bucket is in flight;
  3. pauses the stage itself between bursts and waits until its output
     rings are empty too (a moved flow's packets from the old replica must
     reach the next stage before the new replica's);
  4. moves each moving bucket's per-flow state from its old replica to its
     new one (each NF's @nf(migrate=...): lb's flow entries keep their
     backends), switches the upstream's tables and (un)parks replicas;
  5. resumes both stages.

Per-flow order holds and nothing is lost; the pause lasts a few ms plus
the time to move the state. Stage 0 takes its packets straight from the
NIC's queues and cannot be scaled: put a `nop` stage in front
(`--stages "nop|acl,lb,l3fwd" --scale-max 2`).
"""
import time

import numpy as np

from pynf.errors import RuntimeFailure, UsageError
from pynf.io.ring import BUCKETS
from pynf.packet.keys import K_FLOW, stage_key


def new_table(table, old, new):
    """The indirection table after going from `old` to `new` replicas,
    moving as few buckets as possible."""
    t = np.array(table, dtype=np.int32)
    count = np.bincount(t, minlength=max(old, new))
    if new < old:
        for b in np.flatnonzero(t >= new):
            r = int(np.argmin(count[:new]))
            count[t[b]] -= 1
            t[b] = r
            count[r] += 1
        return t
    share = BUCKETS // new
    for r in range(old, new):
        while count[r] < share:
            donor = int(np.argmax(count[:new]))
            b = int(np.flatnonzero(t == donor)[-1])
            t[b] = r
            count[donor] -= 1
            count[r] += 1
    return t


def _empty(workers):
    """True when the input rings of these workers are empty (either kind)."""
    from pynf.io.ring import rings_empty
    return all(rings_empty(w.src) for w in workers)


def _drain(workers, timeout, what):
    t0 = time.perf_counter()
    while not _empty(workers):
        if time.perf_counter() - t0 > timeout:
            raise RuntimeFailure(f"scale: {what} did not drain within {timeout} s")
        time.sleep(0.0005)


def scale(mail, stage, replicas, timeout=5.0):
    """Scale stage `stage` to `replicas` replicas, through the mailbox
    (pynf.runtime.mailbox) that pauses and resumes its workers; a line
    saying what moved."""
    n = len(mail.specs)
    if not 0 <= stage < n:
        raise UsageError(f"scale: no stage {stage} (stages 0..{n - 1})")
    if stage == 0:
        raise UsageError("scale: stage 0 reads the NIC's queues; put a stage in front "
                         "(a dispatch stage: --stages \"|CHAIN\") and scale the one behind it")
    mine = sorted((w for w in mail.workers if w.stage == stage), key=lambda w: w.replica)
    if not 1 <= replicas <= len(mine):
        raise UsageError(f"scale: stage {stage} has room for 1..{len(mine)} replicas "
                         f"(start it with --scale-max N for more)")
    if stage_key([sp.key for sp in mail.specs[stage]]) != K_FLOW and any(sp.migrate for sp in mail.specs[stage]):
        raise UsageError(f"scale: stage {stage} steers by another key than the flow, and its NFs move "
                         f"state by flow (migrate=): not supported")
    cur = sum(1 for w in mine if w.active)
    if replicas == cur:
        return f"stage {stage}: already {cur} replica(s)\n"
    if not mail.open:
        raise UsageError("scale: the chain is not running")
    up = [w for w in mail.workers if w.stage == stage - 1]
    down = [w for w in mail.workers if w.stage == stage + 1]
    old = up[0].dst.table.copy()
    new = new_table(old, cur, replicas)
    moving = old != new
    # compile (or load) what runs while paused before pausing: a first
    # migrate with nothing moving, a first look at the rings
    for j, spec in enumerate(mail.specs[stage]):
        if spec.migrate is not None:
            spec.migrate(mine[0].states[j], mine[0].states[j], np.zeros(BUCKETS, dtype=np.bool_))
    _empty(mine)
    t0 = time.perf_counter()
    moved = 0
    mail.pause(up, timeout)
    try:
        _drain(mine, timeout, f"stage {stage}'s input")
        mail.pause(mine, timeout)
        try:
            if down:
                _drain(down, timeout, f"stage {stage}'s output")
            for j, spec in enumerate(mail.specs[stage]):
                if spec.migrate is None:
                    continue
                for a in range(len(mine)):
                    for b in range(len(mine)):
                        mask = moving & (old == a) & (new == b)
                        if a != b and mask.any():
                            moved += spec.migrate(mine[a].states[j], mine[b].states[j], mask)
            for w in up:
                w.dst.table[:] = new
            for w in mine:
                w.active = w.replica < replicas
                w.flowcache.invalidate()        # its flows' state may have moved in or out
        finally:
            mail.resume(mine)
    finally:
        mail.resume(up)
    ms = (time.perf_counter() - t0) * 1e3
    return (f"stage {stage}: {cur} -> {replicas} replica(s); {int(moving.sum())} of {BUCKETS} buckets "
            f"and {moved} flow entries moved; paused {ms:.1f} ms\n")
