#pragma once

#include <string>
#include <vector>

#include "idnode/registry/registry.h"

namespace idnode::registry::testing {

inline proto::Value MakeValue(int32_t index, std::string type, std::string data,
                              uint32_t permissions = 0x0e) {
  proto::Value v;
  v.set_index(index);
  v.set_type(std::move(type));
  v.set_data(std::move(data));
  v.set_ttl(86400);
  v.set_permissions(permissions);
  v.set_timestamp(1795627007);
  return v;
}

inline Operation Create(std::string handle, std::vector<proto::Value> values,
                        bool overwrite = false) {
  Operation op;
  op.kind = OpKind::kCreate;
  op.handle = std::move(handle);
  op.values = std::move(values);
  op.overwrite = overwrite;
  return op;
}

inline Operation WithValues(OpKind kind, std::string handle, std::vector<proto::Value> values,
                            bool overwrite = false) {
  Operation op = Create(std::move(handle), std::move(values), overwrite);
  op.kind = kind;
  return op;
}

inline Operation Remove(std::string handle, std::vector<int32_t> indexes) {
  Operation op;
  op.kind = OpKind::kRemoveValues;
  op.handle = std::move(handle);
  op.indexes = std::move(indexes);
  return op;
}

inline Operation Delete(std::string handle) {
  Operation op;
  op.kind = OpKind::kDelete;
  op.handle = std::move(handle);
  return op;
}

}  // namespace idnode::registry::testing
