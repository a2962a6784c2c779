// Stand-in for MagicMind's mm_common.h: the subset the shim uses, as public
// sample code shows it (shared/MAGICMIND_API.md). NOT the Cambricon SDK.
#ifndef MM_STANDIN_COMMON_H
#define MM_STANDIN_COMMON_H
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#define MM_VERSION_STR "stand-in"

namespace magicmind {
namespace error {
enum class Code : int { OK = 0, INVALID_ARGUMENT, INTERNAL, UNAVAILABLE, OUT_OF_RANGE };
}  // namespace error

class Status {
 public:
  Status() : code_(error::Code::OK) {}
  Status(error::Code code, const std::string &msg) : code_(code), msg_(msg) {}
  static Status OK() { return Status(); }
  bool ok() const { return code_ == error::Code::OK; }
  error::Code code() const { return code_; }
  std::string error_message() const { return msg_; }
  std::string ToString() const { return ok() ? "OK" : msg_; }
  bool operator==(const Status &o) const { return code_ == o.code_; }
  bool operator!=(const Status &o) const { return code_ != o.code_; }

 private:
  error::Code code_;
  std::string msg_;
};
inline std::ostream &operator<<(std::ostream &os, const Status &s) { return os << s.ToString(); }

enum class DataType : int { FLOAT16, FLOAT32, INT8, INT16, INT32, INT64, UINT8, BOOL };
enum class Layout : int { NONE, ARRAY, NCHW, NHWC };
enum class TensorLocation : int { kHost, kMLU, kRemoteHost, kRemoteMLU };

class Dims {
 public:
  Dims() {}
  explicit Dims(const std::vector<int64_t> &dims) : d_(dims) {}
  Dims(std::initializer_list<int64_t> dims) : d_(dims) {}
  std::vector<int64_t> GetDims() const { return d_; }
  int64_t GetDimsNum() const { return static_cast<int64_t>(d_.size()); }
  int64_t GetDimValue(int64_t i) const { return d_[static_cast<size_t>(i)]; }
  int64_t GetElementCount() const {
    int64_t n = 1;
    for (size_t i = 0; i < d_.size(); ++i) {
      if (d_[i] < 0) return -1;
      n *= d_[i];
    }
    return n;
  }
  int64_t operator[](int64_t i) const { return d_[static_cast<size_t>(i)]; }

 private:
  std::vector<int64_t> d_;
};

size_t DataTypeSize(DataType t);
}  // namespace magicmind
#endif
