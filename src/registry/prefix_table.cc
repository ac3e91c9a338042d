#include "idnode/registry/prefix_table.h"

#include <functional>

namespace idnode::registry {

namespace {

// Each table's generations start in their own range, so a reader's view of one table is never
// mistaken for another's (one created later at the same address).
std::atomic<uint64_t> next_generation_base{uint64_t{1} << 32};

}  // namespace

std::string_view ParentPrefix(std::string_view prefix) {
  size_t dot = prefix.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : prefix.substr(0, dot);
}

size_t PrefixTable::HashOf(std::string_view s) {
  return std::hash<std::string_view>{}(s);
}

const PrefixEntry* PrefixTable::View::Find(std::string_view prefix) const {
  // The top bits pick the shard; the map uses the low bits (after its own mixing).
  const HashedKey key{prefix, HashOf(prefix)};
  const Map& shard = *shards_[ShardOfHash(key.hash)];
  auto it = shard.find(key);
  return it == shard.end() ? nullptr : &it->second;
}

std::optional<PrefixTable::View::Match> PrefixTable::View::Nearest(std::string_view prefix) const {
  if (size_ == 0) return std::nullopt;
  while (!prefix.empty()) {
    if (const PrefixEntry* e = Find(prefix)) return Match{prefix, *e};
    prefix = ParentPrefix(prefix);
  }
  return std::nullopt;
}

size_t PrefixTable::View::MemoryBytes() const {
  size_t bytes = sizeof(View);
  for (const auto& shard : shards_) {
    // Slots (key and entry) and one control byte per slot, plus each group's overflow byte.
    bytes += sizeof(Map) + shard->bucket_count() * (sizeof(Map::value_type) + 1) +
             shard->bucket_count() / 15 + 16;
    for (const auto& [name, entry] : *shard) {
      if (name.capacity() > 15) bytes += name.capacity() + 1;  // beyond the inline buffer
    }
  }
  return bytes;
}

PrefixTable::PrefixTable() {
  auto empty_shard = std::make_shared<const Map>();
  auto view = std::make_shared<View>();
  for (auto& shard : view->shards_) shard = empty_shard;
  view->generation_ = next_generation_base.fetch_add(uint64_t{1} << 32);
  generation_.store(view->generation_);
  current_ = std::move(view);
}

std::shared_ptr<const PrefixTable::View> PrefixTable::Snapshot() const {
  std::lock_guard lock(publish_mutex_);
  return current_;
}

void PrefixTable::Publish(std::shared_ptr<View> next) {
  std::shared_ptr<const View> old;
  {
    std::lock_guard lock(publish_mutex_);
    next->generation_ = current_->generation_ + 1;
    old = std::exchange(current_, std::move(next));
    generation_.store(current_->generation_, std::memory_order_release);
  }
  // `old` is freed here, outside the lock, unless a reader still holds it.
}

void PrefixTable::Set(std::string_view prefix, PrefixEntry entry) {
  std::lock_guard writer(writer_mutex_);
  std::shared_ptr<const View> current = Snapshot();
  const size_t index = ShardOf(prefix);
  const Map& old_shard = *current->shards_[index];
  auto found = old_shard.find(prefix);
  const bool remove = entry.role == PrefixRole::kNone && entry.flags == 0;
  if (remove ? found == old_shard.end() : (found != old_shard.end() && found->second == entry))
    return;  // nothing changes: nothing to publish
  auto shard = std::make_shared<Map>(old_shard);
  size_t size = current->size_;
  if (remove) {
    shard->erase(prefix);
    --size;
  } else {
    auto [it, inserted] = shard->try_emplace(std::string(prefix), entry);
    if (inserted) {
      ++size;
    } else {
      it->second = entry;
    }
  }
  auto next = std::make_shared<View>(*current);
  next->shards_[index] = std::move(shard);
  next->size_ = size;
  Publish(std::move(next));
}

void PrefixTable::SetMany(const std::vector<std::pair<std::string, PrefixEntry>>& changes) {
  if (changes.empty()) return;
  if (changes.size() == 1) return Set(changes[0].first, changes[0].second);
  std::lock_guard writer(writer_mutex_);
  std::shared_ptr<const View> current = Snapshot();
  auto next = std::make_shared<View>(*current);
  std::array<std::shared_ptr<Map>, kShardCount> copies;  // the shards copied so far
  size_t size = current->size_;
  for (const auto& [prefix, entry] : changes) {
    const size_t index = ShardOf(prefix);
    if (!copies[index]) copies[index] = std::make_shared<Map>(*current->shards_[index]);
    Map& shard = *copies[index];
    if (entry.role == PrefixRole::kNone && entry.flags == 0) {
      size -= shard.erase(prefix);
    } else {
      auto [it, inserted] = shard.try_emplace(prefix, entry);
      if (inserted) {
        ++size;
      } else {
        it->second = entry;
      }
    }
  }
  for (size_t i = 0; i < kShardCount; ++i) {
    if (copies[i]) next->shards_[i] = std::move(copies[i]);
  }
  next->size_ = size;
  Publish(std::move(next));
}

void PrefixTable::Load(std::vector<std::pair<std::string, PrefixEntry>> entries) {
  std::lock_guard writer(writer_mutex_);
  std::array<std::shared_ptr<Map>, kShardCount> shards;
  for (auto& shard : shards) shard = std::make_shared<Map>();
  for (auto& [name, entry] : entries) {
    if (entry.role == PrefixRole::kNone && entry.flags == 0) continue;
    Map& shard = *shards[ShardOf(name)];
    shard.insert_or_assign(std::move(name), entry);
  }
  auto next = std::make_shared<View>();
  size_t size = 0;
  for (size_t i = 0; i < kShardCount; ++i) {
    size += shards[i]->size();
    next->shards_[i] = std::move(shards[i]);
  }
  next->size_ = size;
  Publish(std::move(next));
}

const PrefixTable::View& ThreadView(const PrefixTable& table) {
  struct Slot {
    const PrefixTable* table = nullptr;
    std::optional<PrefixTable::Reader> reader;
  };
  thread_local Slot slot;
  if (slot.table != &table) {
    slot.reader.emplace(table);
    slot.table = &table;
  }
  return slot.reader->Get();
}

}  // namespace idnode::registry
