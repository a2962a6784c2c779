// Stand-in for MagicMind's mm_network.h (the subset the shim uses). NOT the SDK.
#ifndef MM_STANDIN_NETWORK_H
#define MM_STANDIN_NETWORK_H
#include "mm_common.h"
namespace magicmind {
class INetwork {
 public:
  virtual void Destroy() = 0;

 protected:
  virtual ~INetwork() {}
};
INetwork *CreateINetwork();
}  // namespace magicmind
#endif
