// Stand-in for MagicMind's mm_builder.h (the subset the shim uses). NOT the SDK.
#ifndef MM_STANDIN_BUILDER_H
#define MM_STANDIN_BUILDER_H
#include "mm_network.h"
#include "mm_runtime.h"
namespace magicmind {
class IBuilderConfig {
 public:
  // Cumulative: each call adds its keys. {"enable_refit": true} is required
  // for refit; "precision_config" and "archs" as the vendor documents them.
  virtual Status ParseFromString(const std::string &json) = 0;
  virtual void Destroy() = 0;

 protected:
  virtual ~IBuilderConfig() {}
};
class IBuilder {
 public:
  virtual IModel *BuildModel(const std::string &name, INetwork *net, IBuilderConfig *cfg) = 0;
  virtual void Destroy() = 0;

 protected:
  virtual ~IBuilder() {}
};
IBuilder *CreateIBuilder();
IBuilderConfig *CreateIBuilderConfig();
}  // namespace magicmind
#endif
