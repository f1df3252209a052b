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
// container runtimes' children do) is a switch at that moment. `flush` does the same for the
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
// cgroup freed since from the one remembered).
struct pmu_running {
  struct cgroup* cgrp;
  __u64 id;
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

// Adds the counters' deltas since this CPU's last reading to `cgrp` (whose
// id was `id`; null: to no cgroup) and its tracked ancestors.
static __always_inline void account(struct cgroup* cgrp, __u64 id) {
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
  // The deltas of every event first, then one pass over the slots: keeps
  // the verifier's walk short.
  struct pmu_reading delta[PMU_MAX_EVENTS] = {};
  __u32 cpu = bpf_get_smp_processor_id();
  __u32 events = nr_events < PMU_MAX_EVENTS ? nr_events : PMU_MAX_EVENTS;
  for (__u32 e = 0; e < events; e++) {
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
  for (__u32 i = 0; i < nslots && i < PMU_MAX_LEVELS; i++) {
    for (__u32 e = 0; e < events; e++) {
      __u32 at = slots[i] * events + e;
      struct pmu_reading* sum = bpf_map_lookup_elem(&counts, &at);
      if (!sum) continue;
      sum->counter += delta[e].counter;
      sum->enabled += delta[e].enabled;
      sum->running += delta[e].running;
    }
  }
}

// Attributes the interval since the last reading to the remembered cgroup
// and remembers `to`, unless `to` is the remembered cgroup already (then its
// share keeps accumulating), or `always`.
static __always_inline void switch_to(struct cgroup* to, bool always) {
  __u32 zero = 0;
  struct pmu_running* run = bpf_map_lookup_elem(&running, &zero);
  if (!run) return;
  if (run->cgrp == to && !always) return;
  account(run->cgrp, run->id);
  run->cgrp = to;
  run->id = to ? BPF_CORE_READ(to, kn, id) : 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(pmu_on_switch, bool preempt, struct task_struct* prev, struct task_struct* next) {
  switch_to(task_cgroup(next), false);
  return 0;
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(pmu_on_attach, struct cgroup* dst, const char* path, struct task_struct* task,
             bool threadgroup) {
  // Only a task that moved itself runs here; another CPU's task is seen at
  // its next switch.
  if (BPF_CORE_READ(task, pid) != (__u32)bpf_get_current_pid_tgid()) return 0;
  switch_to(task_cgroup(task), false);
  return 0;
}

SEC("raw_tp")
int pmu_flush(void* ctx) {
  switch_to(task_cgroup((struct task_struct*)bpf_get_current_task()), true);
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
