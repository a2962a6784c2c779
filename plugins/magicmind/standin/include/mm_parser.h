// Stand-in for MagicMind's mm_parser.h (the subset the shim uses). NOT the SDK.
#ifndef MM_STANDIN_PARSER_H
#define MM_STANDIN_PARSER_H
#include "mm_network.h"
namespace magicmind {
enum class ModelKind : int { kCaffe, kOnnx, kPytorch, kTensorflow };

template <ModelKind Kind, typename... Args>
class IParser {
 public:
  virtual Status Parse(INetwork *network, Args... args) = 0;
  virtual void Destroy() = 0;

 protected:
  virtual ~IParser() {}
};
template <ModelKind Kind, typename... Args>
IParser<Kind, Args...> *CreateIParser();
template <>
IParser<ModelKind::kOnnx, std::string> *CreateIParser<ModelKind::kOnnx, std::string>();
}  // namespace magicmind
#endif
