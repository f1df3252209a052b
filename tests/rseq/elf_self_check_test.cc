// Reads the rseq descriptors this test binary carries (its own ELF file
// gives the sections; the loaded image gives the relocated contents) and
// checks each one against the kernel's rules.
#include <elf.h>
#include <gtest/gtest.h>
#include <link.h>
#include <sys/rseq.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "pmu/rseq/arch.h"
#include "pmu/rseq/read_fault.h"

namespace {

struct Section {
  std::uint64_t addr = 0;
  std::uint64_t size = 0;
};

std::map<std::string, Section> ReadSections(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> file{std::istreambuf_iterator<char>(in),
                               std::istreambuf_iterator<char>()};
  std::map<std::string, Section> out;
  if (file.size() < sizeof(Elf64_Ehdr)) return out;
  Elf64_Ehdr eh;
  std::memcpy(&eh, file.data(), sizeof(eh));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    return out;
  std::vector<Elf64_Shdr> shdrs(eh.e_shnum);
  if (eh.e_shoff + eh.e_shnum * sizeof(Elf64_Shdr) > file.size()) return out;
  std::memcpy(shdrs.data(), file.data() + eh.e_shoff, eh.e_shnum * sizeof(Elf64_Shdr));
  const Elf64_Shdr& names = shdrs.at(eh.e_shstrndx);
  for (const Elf64_Shdr& sh : shdrs) {
    const char* name = file.data() + names.sh_offset + sh.sh_name;
    out[name] = Section{sh.sh_addr, sh.sh_size};
  }
  return out;
}

std::uintptr_t MainProgramBias() {
  std::uintptr_t bias = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        *static_cast<std::uintptr_t*>(data) = info->dlpi_addr;
        return 1;  // the first object is the main program
      },
      &bias);
  return bias;
}

TEST(RseqElfSelfCheck, DescriptorsFollowTheAbi) {
  if (!pmu::rseq::detail::arch::kSectionsSupported) {
    GTEST_SKIP() << "this ISA has no critical sections";
  }
  const auto sections = ReadSections("/proc/self/exe");
  ASSERT_TRUE(sections.count("__rseq_cs")) << "no __rseq_cs section in /proc/self/exe";
  ASSERT_TRUE(sections.count("__rseq_cs_ptr_array"));
  ASSERT_TRUE(sections.count("__rseq_exit_point_array"));
  const Section cs = sections.at("__rseq_cs");
  const Section ptrs = sections.at("__rseq_cs_ptr_array");
  const Section exits = sections.at("__rseq_exit_point_array");
  ASSERT_EQ(cs.size % sizeof(struct rseq_cs), 0u);
  ASSERT_EQ(cs.addr % 32, 0u) << "__rseq_cs must be 32-byte aligned";
  const std::uintptr_t bias = MainProgramBias();

  const auto* descs = reinterpret_cast<const struct rseq_cs*>(bias + cs.addr);
  const std::size_t count = cs.size / sizeof(struct rseq_cs);
  ASSERT_GE(count, 3u) << "expected the counter, ring and read sections";
  std::set<std::uint64_t> starts;
  for (std::size_t i = 0; i < count; ++i) {
    const struct rseq_cs& d = descs[i];
    SCOPED_TRACE("descriptor " + std::to_string(i));
    EXPECT_EQ(d.version, 0u);
    EXPECT_EQ(d.flags, 0u);
    EXPECT_GT(d.post_commit_offset, 0u);
    EXPECT_TRUE(d.abort_ip < d.start_ip || d.abort_ip >= d.start_ip + d.post_commit_offset)
        << "abort_ip inside the section";
    std::uint32_t signature = 0;
    std::memcpy(&signature, reinterpret_cast<const void*>(d.abort_ip - 4), sizeof(signature));
    EXPECT_EQ(signature, static_cast<std::uint32_t>(RSEQ_SIG));
    starts.insert(d.start_ip);
  }

  // Every pointer in __rseq_cs_ptr_array names one of the descriptors.
  ASSERT_EQ(ptrs.size, count * sizeof(std::uint64_t));
  const auto* ptr_array = reinterpret_cast<const std::uint64_t*>(bias + ptrs.addr);
  std::set<std::uint64_t> pointed;
  for (std::size_t i = 0; i < count; ++i) {
    EXPECT_GE(ptr_array[i], bias + cs.addr);
    EXPECT_LT(ptr_array[i], bias + cs.addr + cs.size);
    EXPECT_EQ((ptr_array[i] - bias - cs.addr) % sizeof(struct rseq_cs), 0u);
    pointed.insert(ptr_array[i]);
  }
  EXPECT_EQ(pointed.size(), count);

  // Each exit point belongs to a known section and lies outside it.
  ASSERT_EQ(exits.size % (2 * sizeof(std::uint64_t)), 0u);
  const auto* exit_pairs = reinterpret_cast<const std::uint64_t*>(bias + exits.addr);
  for (std::size_t i = 0; i < exits.size / 16; ++i) {
    const std::uint64_t start = exit_pairs[2 * i];
    const std::uint64_t exit_ip = exit_pairs[2 * i + 1];
    ASSERT_TRUE(starts.count(start)) << "exit point for an unknown section";
    for (std::size_t d = 0; d < count; ++d) {
      if (descs[d].start_ip != start) continue;
      EXPECT_TRUE(exit_ip < start || exit_ip >= start + descs[d].post_commit_offset);
    }
  }

  // The ReadPages table (pseudocode.h) names read-section descriptors, and
  // the fault handler's lookup accepts the abort_ip of those and no other.
  std::size_t read_sections = 0;
  if (pmu::rseq::detail::arch::kHasCounterReadSection) {
    const std::string table_name = pmu::rseq::detail::kReadSectionTable;
    ASSERT_TRUE(sections.count(table_name)) << "no " << table_name << " section";
    const Section table = sections.at(table_name);
    ASSERT_EQ(table.size % sizeof(std::uint64_t), 0u);
    ASSERT_EQ(table.addr % sizeof(std::uint64_t), 0u);
    read_sections = table.size / sizeof(std::uint64_t);
    EXPECT_GE(read_sections, 2u) << "expected the hardware and the fake read section";
    const auto* entries = reinterpret_cast<const std::uint64_t*>(bias + table.addr);
    std::set<std::uint64_t> listed;
    for (std::size_t i = 0; i < read_sections; ++i) {
      EXPECT_TRUE(pointed.count(entries[i])) << "table entry is not a descriptor";
      listed.insert(entries[i]);
    }
    EXPECT_EQ(listed.size(), read_sections);
    for (std::size_t i = 0; i < count; ++i) {
      const auto address = reinterpret_cast<std::uint64_t>(&descs[i]);
      EXPECT_EQ(pmu::rseq::detail::IsReadSectionAbortIp(descs[i].abort_ip),
                listed.count(address) != 0)
          << "descriptor " << i;
    }
  }
  std::printf("[rseq] %zu descriptors (%zu read sections), %zu exit points checked\n", count,
              read_sections, static_cast<std::size_t>(exits.size / 16));
}

}  // namespace
