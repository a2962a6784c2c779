// Stand-in for MagicMind's mm_runtime.h (the subset the shim uses). NOT the SDK.
#ifndef MM_STANDIN_RUNTIME_H
#define MM_STANDIN_RUNTIME_H
#include "mm_common.h"
namespace magicmind {
class IRTTensor {
 public:
  virtual Status SetDimensions(const Dims &d) = 0;
  virtual Dims GetDimensions() const = 0;
  virtual Status SetData(void *ptr) = 0;  // borrows, never owns
  virtual void *GetMutableData() = 0;
  virtual int64_t GetSize() const = 0;  // bytes
  virtual DataType GetDataType() const = 0;
  virtual std::string GetName() const = 0;
  virtual TensorLocation GetMemoryLocation() const = 0;
  virtual Status Destroy() = 0;

 protected:
  virtual ~IRTTensor() {}
};
IRTTensor *CreateIRTTensor(DataType dtype, const std::string &name, Layout layout, TensorLocation loc);

class IContext {
 public:
  virtual Status CreateInputTensors(std::vector<IRTTensor *> *inputs) = 0;
  virtual Status CreateOutputTensors(std::vector<IRTTensor *> *outputs) = 0;
  virtual Status InferOutputShape(const std::vector<IRTTensor *> &inputs,
                                  const std::vector<IRTTensor *> &outputs) = 0;
  // queue: a cnrtQueue_t. Completes asynchronously on the queue.
  virtual Status Enqueue(const std::vector<IRTTensor *> &inputs, const std::vector<IRTTensor *> &outputs,
                         void *queue) = 0;
  virtual Status Destroy() = 0;

 protected:
  virtual ~IContext() {}
};

class IEngine {
 public:
  virtual IContext *CreateIContext() = 0;  // not thread-safe on one engine
  virtual Status Destroy() = 0;

 protected:
  virtual ~IEngine() {}
};

class IModel {
 public:
  virtual IEngine *CreateIEngine() = 0;  // not thread-safe on one model
  virtual int GetInputNum() const = 0;
  virtual int GetOutputNum() const = 0;
  virtual std::vector<std::string> GetInputNames() const = 0;
  virtual std::vector<std::string> GetOutputNames() const = 0;
  virtual std::vector<Dims> GetInputDimensions() const = 0;
  virtual std::vector<Dims> GetOutputDimensions() const = 0;
  virtual std::vector<DataType> GetInputDataTypes() const = 0;
  virtual std::vector<DataType> GetOutputDataTypes() const = 0;
  virtual void Destroy() = 0;

 protected:
  virtual ~IModel() {}
};

class IRefitter {
 public:
  virtual Status GetMissingNames(std::vector<std::string> *names) = 0;
  virtual Status SetNamedWeights(const std::string &name, IRTTensor *weights) = 0;  // host tensor
  virtual Status RefitEngine() = 0;
  virtual void Destroy() = 0;

 protected:
  virtual ~IRefitter() {}
};
IRefitter *CreateIRefitter(IEngine *engine);
}  // namespace magicmind
#endif
