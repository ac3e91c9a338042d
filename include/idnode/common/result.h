// Result<T, E>: the one error vocabulary of idnode's hot paths.
//
// A value or an error, never both. Errors are small values (an enum and a few
// integers), so returning one allocates nothing; exceptions are reserved for
// startup and configuration (see ARCHITECTURE.md, "Decisions already made").
#pragma once

#include <type_traits>
#include <utility>
#include <variant>

namespace idnode {

// Wraps an error so that Result's constructors cannot confuse it with a value.
template <typename E>
struct Failure {
  E error;
};

template <typename E>
Failure(E) -> Failure<E>;

template <typename T, typename E>
class [[nodiscard]] Result {
 public:
  // Implicit on purpose: `return value;` and `return Failure{err};` both read naturally.
  Result(T value) : storage_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Failure<E> failure)                                               // NOLINT
      : storage_(std::in_place_index<1>, std::move(failure.error)) {}

  [[nodiscard]] bool ok() const { return storage_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return *std::get_if<0>(&storage_); }
  const T& value() const& { return *std::get_if<0>(&storage_); }
  T&& value() && { return std::move(*std::get_if<0>(&storage_)); }
  T* operator->() { return std::get_if<0>(&storage_); }
  const T* operator->() const { return std::get_if<0>(&storage_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(value()); }

  const E& error() const { return *std::get_if<1>(&storage_); }

 private:
  std::variant<T, E> storage_;
};

// Result of an operation that yields nothing but may fail.
struct Unit {};

}  // namespace idnode
