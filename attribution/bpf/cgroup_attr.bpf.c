// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
// Per-cgroup attribution of per-CPU counters (pmu-exporter, attribution/).
//
// User space opens one CPU-wide counter per (event, CPU) and stores it in
// `counters` at index event * nr_cpus + cpu. Each CPU remembers the cgroup
// it switched to last (`running`). When a switch (tp_btf/sched_switch) goes
// to a task of another cgroup, the counters' deltas since the CPU's previous
// reading are added to the remembered cgroup and to each of its ancestors
// that user space tracks (`tracked`: cgroup id -> slot). The remembered
// cgroup, not the outgoing task's present one: a task that moved itself to
// another cgroup while running would otherwise carry the time of the tasks
// before it into its new cgroup; a task that moves itself
// (tp_btf/cgroup_attach_task in its own context, as systemd's and the
// container runtimes' children do) is a switch at that moment. A switch
// out of a task other than the one the CPU last switched to means a switch
// went unseen: the interval is split by the task's present stint
// (catch_up()). `flush` does the same for the
// interval up to now; user space runs it on every CPU (BPF_PROG_TEST_RUN with
// BPF_F_TEST_RUN_ON_CPU) before it reads `counts`, so a task that has run
// since its last switch is not missing from the reading.
//
// `counts` is a per-CPU array of cumulative readings at slot * nr_events +
// event. A per-CPU entry is only ever written on its CPU with preemption
// off (tracepoint, or the test-run IPI), so plain additions are exact.
// vmlinux.h defines the types the libbpf headers use: keep it first.
// clang-format off
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
// clang-format on

#define PMU_MAX_EVENTS 8
#define PMU_MAX_LEVELS 16

struct pmu_reading {
  __u64 counter;
  __u64 enabled;
  __u64 running;
};

struct pmu_last {
  __u64 counter;
  __u64 enabled;
  __u64 running;
  __u64 valid;
  __u64 gen;  // gens[] of the counter read
};

const volatile __u32 nr_cpus = 1;
const volatile __u32 nr_events = 1;

struct {
  __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, sizeof(__u32));
} counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PMU_MAX_EVENTS);
  __type(key, __u32);
  __type(value, struct pmu_last);
} last SEC(".maps");

// The generation of each counter (index as in `counters`): user space bumps
// it before it stores a new counter for a CPU that came online, so the
// first reading of the new counter is a base, not a delta against the old.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);  // set by the loader
  __type(key, __u32);
  __type(value, __u64);
} gens SEC(".maps");

// The cgroup each CPU last switched to (pointer and id: the id tells a
// cgroup freed since from the one remembered), and the task switched to
// (pid; 0 before the first switch).
struct pmu_running {
  struct cgroup* cgrp;
  __u64 id;
  __u32 pid;
  __u32 pad;
  __u64 at;  // bpf_ktime_get_ns() of the last reading; 0 before the first
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct pmu_running);
} running SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);  // set by the loader
  __type(key, __u64);
  __type(value, __u32);
} tracked SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);  // set by the loader
  __type(key, __u32);
  __type(value, struct pmu_reading);
} counts SEC(".maps");

static __always_inline struct cgroup* task_cgroup(struct task_struct* task) {
  return BPF_CORE_READ(task, cgroups, dfl_cgrp);
}

// The counters' deltas since this CPU's last reading, which they replace.
static __always_inline void read_deltas(struct pmu_reading* delta) {
  __u32 cpu = bpf_get_smp_processor_id();
  __u32 events = nr_events < PMU_MAX_EVENTS ? nr_events : PMU_MAX_EVENTS;
  for (__u32 e = 0; e < events && e < PMU_MAX_EVENTS; e++) {
    struct bpf_perf_event_value now = {};
    __u32 index = e * nr_cpus + cpu;
    if (bpf_perf_event_read_value(&counters, index, &now, sizeof(now)) != 0) continue;
    __u32 key = e;
    struct pmu_last* prev = bpf_map_lookup_elem(&last, &key);
    if (!prev) continue;
    __u64* gen = bpf_map_lookup_elem(&gens, &index);
    __u64 current = gen ? *gen : 0;
    if (prev->valid && prev->gen == current) {
      delta[e].counter = now.counter - prev->counter;
      delta[e].enabled = now.enabled - prev->enabled;
      delta[e].running = now.running - prev->running;
    }
    prev->counter = now.counter;
    prev->enabled = now.enabled;
    prev->running = now.running;
    prev->valid = 1;
    prev->gen = current;
  }
}

// part * share / 65536 without overflow (share <= 65536).
static __always_inline __u64 scaled(__u64 part, __u64 share) {
  return (part >> 16) * share + (((part & 0xffff) * share) >> 16);
}

// The share of `part` that `share` (of 65536) is, or with `rest` what is
// left of it.
static __always_inline __u64 portion(__u64 part, __u64 share, bool rest) {
  __u64 mine = scaled(part, share);
  return rest ? part - mine : mine;
}

// Adds the portion of `delta` (see portion(); 65536: all of it) to `cgrp`
// (whose id was `id`; null: to no cgroup) and its tracked ancestors.
static __always_inline void add_to(struct cgroup* cgrp, __u64 id, const struct pmu_reading* delta,
                                   __u64 share, bool rest) {
  __u32 slots[PMU_MAX_LEVELS];
  __u32 nslots = 0;
  struct cgroup* c = cgrp;
  if (c && BPF_CORE_READ(c, kn, id) != id) c = 0;  // freed since
  for (int level = 0; level < PMU_MAX_LEVELS && c; level++) {
    __u64 id = BPF_CORE_READ(c, kn, id);
    __u32* slot = bpf_map_lookup_elem(&tracked, &id);
    if (slot && nslots < PMU_MAX_LEVELS) slots[nslots++] = *slot;
    // `self` is the first member of struct cgroup: a parent css is its cgroup.
    c = (struct cgroup*)BPF_CORE_READ(c, self.parent);
  }
  __u32 events = nr_events < PMU_MAX_EVENTS ? nr_events : PMU_MAX_EVENTS;
  for (__u32 i = 0; i < nslots && i < PMU_MAX_LEVELS; i++) {
    for (__u32 e = 0; e < events && e < PMU_MAX_EVENTS; e++) {
      __u32 at = slots[i] * events + e;
      struct pmu_reading* sum = bpf_map_lookup_elem(&counts, &at);
      if (!sum) continue;
      sum->counter += portion(delta[e].counter, share, rest);
      sum->enabled += portion(delta[e].enabled, share, rest);
      sum->running += portion(delta[e].running, share, rest);
    }
  }
}

// Attributes the interval since the last reading to the remembered cgroup
// and remembers `to` and the task `pid` now running, unless `to` is the
// remembered cgroup already (then its share keeps accumulating), or `always`.
static __always_inline void switch_to(struct cgroup* to, __u32 pid, bool always) {
  __u32 zero = 0;
  struct pmu_running* run = bpf_map_lookup_elem(&running, &zero);
  if (!run) return;
  run->pid = pid;
  if (run->cgrp == to && !always) return;
  // The deltas of every event first, then one pass over the slots: keeps
  // the verifier's walk short.
  struct pmu_reading delta[PMU_MAX_EVENTS] = {};
  read_deltas(delta);
  run->at = bpf_ktime_get_ns();
  add_to(run->cgrp, run->id, delta, 65536, false);
  run->cgrp = to;
  run->id = to ? BPF_CORE_READ(to, kn, id) : 0;
}

// How long `task`, running on this CPU, has run since it was switched in:
// the scheduler's clock (rq->clock, brought up to date at every schedule())
// since the task's sched_info.last_arrival (set at every switch in, on the
// same clock). Not sum_exec_runtime - prev_sum_exec_runtime: the scheduler
// restarts that at every change of a running task's group, affinity or
// priority (set_next_task), and an exiting task changes its autogroup just
// before its last switch, which made the stint of a task that ran 168 ms
// read 28 us. That difference only where the kernel keeps no sched_info, or
// for the idle task, which never arrives.
static __always_inline __u64 stint_of(struct task_struct* task) {
  if (bpf_core_field_exists(task->sched_info.last_arrival)) {
    __u64 arrived = BPF_CORE_READ(task, sched_info.last_arrival);
    __u64 now = BPF_CORE_READ(task, se.cfs_rq, rq, clock);
    if (arrived != 0 && now >= arrived) return now - arrived;
  }
  return BPF_CORE_READ(task, se.sum_exec_runtime) - BPF_CORE_READ(task, se.prev_sum_exec_runtime);
}

// The outgoing task is not the one this CPU last switched to: the switch to
// it went unseen (the program does not run at every switch:
// docs/ATTRIBUTION.md). Since the last reading ran the remembered cgroup,
// whatever ran unseen, and `prev` for its present stint (stint_of()).
// `prev`'s cgroup gets the share of the
// interval that stint is, the remembered cgroup the rest; from now on
// `prev`'s cgroup is the remembered one.
static __always_inline void catch_up(struct pmu_running* run, struct task_struct* prev) {
  struct cgroup* from = task_cgroup(prev);
  __u64 from_id = from ? BPF_CORE_READ(from, kn, id) : 0;
  if (run->cgrp != from) {
    __u64 now = bpf_ktime_get_ns();
    __u64 interval = now - run->at;
    __u64 stint = stint_of(prev);
    __u64 share = 65536;
    if (run->at != 0 && stint < interval) share = interval ? stint * 65536 / interval : 0;
    struct pmu_reading delta[PMU_MAX_EVENTS] = {};
    read_deltas(delta);
    run->at = now;
    add_to(from, from_id, delta, share, false);
    add_to(run->cgrp, run->id, delta, share, true);
  }
  run->cgrp = from;
  run->id = from_id;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(pmu_on_switch, bool preempt, struct task_struct* prev, struct task_struct* next) {
  __u32 zero = 0;
  struct pmu_running* run = bpf_map_lookup_elem(&running, &zero);
  if (run && run->pid != BPF_CORE_READ(prev, pid)) catch_up(run, prev);
  switch_to(task_cgroup(next), BPF_CORE_READ(next, pid), false);
  return 0;
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(pmu_on_attach, struct cgroup* dst, const char* path, struct task_struct* task,
             bool threadgroup) {
  // Only a task that moved itself runs here; another CPU's task is seen at
  // its next switch.
  if (BPF_CORE_READ(task, pid) != (__u32)bpf_get_current_pid_tgid()) return 0;
  switch_to(task_cgroup(task), BPF_CORE_READ(task, pid), false);
  return 0;
}

SEC("raw_tp")
int pmu_flush(void* ctx) {
  struct task_struct* current = (struct task_struct*)bpf_get_current_task();
  // As at a switch out: the switch to the running task may have gone unseen
  // (its stint then ends at the scheduler clock's last update, a tick at
  // most behind).
  __u32 zero = 0;
  struct pmu_running* run = bpf_map_lookup_elem(&running, &zero);
  if (run && run->pid != BPF_CORE_READ(current, pid)) catch_up(run, current);
  switch_to(task_cgroup(current), BPF_CORE_READ(current, pid), true);
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
