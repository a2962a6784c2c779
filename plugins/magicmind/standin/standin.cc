// A stand-in for the subset of the MagicMind SDK the shim uses, so the shim
// compiles and its logic is tested without an MLU. It is NOT the Cambricon
// SDK: it runs the harness's reference engine through the plugin C ABI
// (include/refit_plugin.h), loaded from STANDIN_BACKEND (set when built,
// overridden by the MM_STANDIN_BACKEND environment variable).
//
// It behaves like a device where a shim can get it wrong:
// - device memory (cnrtMalloc) is not host memory: its addresses lie in a
//   reserved, inaccessible range, so a shim that reads or writes it without
//   cnrtMemcpy crashes; cnrtMemcpy moves the bytes;
// - IContext::Enqueue returns at once and runs on the queue's own thread a
//   little later; until then the outputs hold garbage (NaN), so a shim that
//   copies them back without cnrtQueueSync reads garbage;
// - IEngine::CreateIContext is not thread-safe: two calls at once on one
//   engine are detected, reported on stderr, and the second returns NULL.
#include <dlfcn.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "cnrt.h"
#include "mm_builder.h"
#include "mm_parser.h"
#include "mm_runtime.h"
#include "refit_plugin.h"

#ifndef STANDIN_BACKEND
#define STANDIN_BACKEND ""
#endif

namespace {

using magicmind::DataType;
using magicmind::Dims;
using magicmind::Status;
namespace code = magicmind::error;

Status Fail(const std::string &msg) { return Status(code::Code::INTERNAL, msg); }
Status Invalid(const std::string &msg) { return Status(code::Code::INVALID_ARGUMENT, msg); }

// ---- the backend: the reference engine through the plugin ABI ----

const refit_plugin_api *Backend(std::string *why) {
  static std::once_flag once;
  static const refit_plugin_api *api = nullptr;
  static std::string error;
  std::call_once(once, [] {
    const char *env = std::getenv("MM_STANDIN_BACKEND");
    std::string path = env && *env ? env : STANDIN_BACKEND;
    if (path.empty()) {
      error = "stand-in: no backend (build with STANDIN_BACKEND or set MM_STANDIN_BACKEND)";
      return;
    }
    void *lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      error = std::string("stand-in: cannot load the backend: ") + dlerror();
      return;
    }
    typedef const refit_plugin_api *(*GetApi)(uint32_t);
    GetApi get = reinterpret_cast<GetApi>(dlsym(lib, "refit_plugin_get_api"));
    api = get ? get(REFIT_PLUGIN_ABI_VERSION) : nullptr;
    if (!api) error = "stand-in: the backend has no version-1 refit_plugin_get_api";
  });
  if (!api && why) *why = error;
  return api;
}

std::string BackendError() { return Backend(nullptr)->last_error(); }

DataType FromRefit(refit_dtype t) {
  return t == REFIT_F16 ? DataType::FLOAT16 : t == REFIT_I32 ? DataType::INT32 : DataType::FLOAT32;
}

refit_dtype ToRefit(DataType t) {
  return t == DataType::FLOAT16 ? REFIT_F16 : t == DataType::INT32 ? REFIT_I32 : REFIT_F32;
}

// ---- device memory ----

struct Device {
  std::mutex lock;
  unsigned char *base = nullptr;
  size_t used = 0;
  size_t size = size_t(1) << 36;
  std::map<uintptr_t, std::vector<unsigned char>> blocks;  // device address -> shadow bytes

  Device() {
    void *p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base = p == MAP_FAILED ? nullptr : static_cast<unsigned char *>(p);
  }

  // The shadow bytes at device address `p`, with `bytes` of room, or NULL.
  unsigned char *Shadow(const void *p, size_t bytes) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = blocks.upper_bound(a);
    if (it == blocks.begin()) return nullptr;
    --it;
    size_t off = a - it->first;
    if (off > it->second.size() || it->second.size() - off < bytes) return nullptr;
    return it->second.data() + off;
  }
};

Device &Dev() {
  static Device d;
  return d;
}

bool IsDevice(const void *p) {
  const unsigned char *c = static_cast<const unsigned char *>(p);
  return Dev().base && c >= Dev().base && c < Dev().base + Dev().size;
}

}  // namespace

// ---- cnrt ----

struct cnrtQueue {
  std::mutex lock;
  std::condition_variable cv;
  std::deque<std::function<void()>> jobs;
  size_t pending = 0;
  bool stop = false;
  std::thread worker;

  cnrtQueue() : worker([this] { Run(); }) {}

  void Run() {
    std::unique_lock<std::mutex> g(lock);
    for (;;) {
      cv.wait(g, [this] { return stop || !jobs.empty(); });
      if (jobs.empty()) return;
      std::function<void()> job = jobs.front();
      jobs.pop_front();
      g.unlock();
      // A device takes a while: long enough that a shim reading outputs
      // without a sync sees the garbage.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      job();
      g.lock();
      --pending;
      cv.notify_all();
    }
  }

  void Push(std::function<void()> job) {
    std::lock_guard<std::mutex> g(lock);
    jobs.push_back(job);
    ++pending;
    cv.notify_all();
  }

  void Sync() {
    std::unique_lock<std::mutex> g(lock);
    cv.wait(g, [this] { return pending == 0; });
  }
};

extern "C" {

cnrtRet_t cnrtSetDevice(int ordinal) { return ordinal == 0 ? cnrtSuccess : cnrtErrorArgsInvalid; }

cnrtRet_t cnrtGetDeviceCount(unsigned int *count) {
  if (!count) return cnrtErrorArgsInvalid;
  *count = 1;
  return cnrtSuccess;
}

cnrtRet_t cnrtMalloc(void **ptr, size_t bytes) {
  Device &d = Dev();
  std::lock_guard<std::mutex> g(d.lock);
  if (!ptr || !d.base) return cnrtErrorArgsInvalid;
  size_t room = (bytes + 63) / 64 * 64 + 64;
  if (d.size - d.used < room) return cnrtErrorNoMem;
  unsigned char *p = d.base + d.used;
  d.used += room;
  d.blocks[reinterpret_cast<uintptr_t>(p)] = std::vector<unsigned char>(bytes);
  *ptr = p;
  return cnrtSuccess;
}

cnrtRet_t cnrtFree(void *ptr) {
  Device &d = Dev();
  std::lock_guard<std::mutex> g(d.lock);
  return d.blocks.erase(reinterpret_cast<uintptr_t>(ptr)) ? cnrtSuccess : cnrtErrorArgsInvalid;
}

cnrtRet_t cnrtMemcpy(void *dst, void *src, size_t bytes, cnrtMemTransDir_t dir) {
  Device &d = Dev();
  std::lock_guard<std::mutex> g(d.lock);
  unsigned char *to = static_cast<unsigned char *>(dst);
  const unsigned char *from = static_cast<const unsigned char *>(src);
  if (dir == cnrtMemcpyHostToDev || dir == cnrtMemcpyDevToDev) to = d.Shadow(dst, bytes);
  if (dir == cnrtMemcpyDevToHost || dir == cnrtMemcpyDevToDev) from = d.Shadow(src, bytes);
  if (dir > cnrtMemcpyHostToHost && dir != cnrtMemcpyDevToDev) return cnrtErrorArgsInvalid;
  if (!to || !from || (dir == cnrtMemcpyHostToHost && (IsDevice(dst) || IsDevice(src))) ||
      (dir == cnrtMemcpyHostToDev && IsDevice(src)) || (dir == cnrtMemcpyDevToHost && IsDevice(dst)))
    return cnrtErrorArgsInvalid;
  if (bytes) std::memcpy(to, from, bytes);
  return cnrtSuccess;
}

cnrtRet_t cnrtQueueCreate(cnrtQueue_t *q) {
  if (!q) return cnrtErrorArgsInvalid;
  *q = new cnrtQueue();
  return cnrtSuccess;
}

cnrtRet_t cnrtQueueSync(cnrtQueue_t q) {
  if (!q) return cnrtErrorArgsInvalid;
  q->Sync();
  return cnrtSuccess;
}

cnrtRet_t cnrtQueueDestroy(cnrtQueue_t q) {
  if (!q) return cnrtErrorArgsInvalid;
  q->Sync();
  {
    std::lock_guard<std::mutex> g(q->lock);
    q->stop = true;
    q->cv.notify_all();
  }
  q->worker.join();
  delete q;
  return cnrtSuccess;
}

const char *cnrtGetErrorStr(cnrtRet_t r) {
  switch (r) {
    case cnrtSuccess: return "success";
    case cnrtErrorArgsInvalid: return "invalid argument (a host pointer where a device one is due, or an unknown one)";
    case cnrtErrorNoMem: return "out of device memory";
    default: return "system error";
  }
}

}  // extern "C"

namespace magicmind {

size_t DataTypeSize(DataType t) {
  switch (t) {
    case DataType::FLOAT16: case DataType::INT16: return 2;
    case DataType::INT8: case DataType::UINT8: case DataType::BOOL: return 1;
    case DataType::INT64: return 8;
    default: return 4;
  }
}

namespace {

struct Network : INetwork {
  std::string model;
  void Destroy() override { delete this; }
};

struct OnnxParser : IParser<ModelKind::kOnnx, std::string> {
  Status Parse(INetwork *network, std::string path) override {
    Network *n = dynamic_cast<Network *>(network);
    if (!n) return Invalid("Parse: not a network from CreateINetwork");
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) return Invalid("Parse: cannot open " + path);
    std::fclose(f);
    n->model = path;
    return Status::OK();
  }
  void Destroy() override { delete this; }
};

struct BuilderConfig : IBuilderConfig {
  std::string json = "{}";
  Status ParseFromString(const std::string &text) override {
    // Cumulative: the members of `text` join those given before.
    size_t open = text.find('{'), close = text.rfind('}');
    if (open == std::string::npos || close == std::string::npos || close < open)
      return Invalid("ParseFromString: not a JSON object: " + text);
    std::string members = text.substr(open + 1, close - open - 1);
    if (members.find_first_not_of(" \t\r\n") == std::string::npos) return Status::OK();
    json = json == "{}" ? "{" + members + "}" : json.substr(0, json.size() - 1) + "," + members + "}";
    return Status::OK();
  }
  void Destroy() override { delete this; }
};

struct Tensor : IRTTensor {
  std::string name;
  DataType dtype;
  TensorLocation loc;
  Dims dims;
  void *data = nullptr;
  Tensor(const std::string &n, DataType t, TensorLocation l, const Dims &d) : name(n), dtype(t), loc(l), dims(d) {}
  Status SetDimensions(const Dims &d) override {
    dims = d;
    return Status::OK();
  }
  Dims GetDimensions() const override { return dims; }
  Status SetData(void *p) override {
    if (loc == TensorLocation::kMLU && p && !IsDevice(p))
      return Invalid("SetData: tensor '" + name + "' lives on the device; got a host pointer");
    data = p;
    return Status::OK();
  }
  void *GetMutableData() override { return data; }
  int64_t GetSize() const override {
    int64_t n = dims.GetElementCount();
    return n < 0 ? 0 : n * static_cast<int64_t>(DataTypeSize(dtype));
  }
  DataType GetDataType() const override { return dtype; }
  std::string GetName() const override { return name; }
  TensorLocation GetMemoryLocation() const override { return loc; }
  Status Destroy() override {
    delete this;
    return Status::OK();
  }
};

struct Io {
  std::vector<std::string> names;
  std::vector<Dims> dims;
  std::vector<DataType> dtypes;
};

Io Describe(const refit_engine *e, bool inputs) {
  const refit_plugin_api *api = Backend(nullptr);
  Io io;
  uint32_t n = 0;
  (inputs ? api->engine_input_count : api->engine_output_count)(e, &n);
  for (uint32_t i = 0; i < n; ++i) {
    refit_tensor_desc d;
    (inputs ? api->engine_input : api->engine_output)(e, i, &d);
    io.names.push_back(d.name);
    io.dims.push_back(Dims(std::vector<int64_t>(d.dims, d.dims + d.rank)));
    io.dtypes.push_back(FromRefit(d.dtype));
  }
  return io;
}

struct Engine;

struct Context : IContext {
  Engine *engine;
  refit_context *backend;
  explicit Context(Engine *e, refit_context *b) : engine(e), backend(b) {}
  Status CreateInputTensors(std::vector<IRTTensor *> *out) override;
  Status CreateOutputTensors(std::vector<IRTTensor *> *out) override;
  Status InferOutputShape(const std::vector<IRTTensor *> &in, const std::vector<IRTTensor *> &out) override;
  Status Enqueue(const std::vector<IRTTensor *> &in, const std::vector<IRTTensor *> &out, void *queue) override;
  Status Destroy() override {
    Backend(nullptr)->context_destroy(backend);
    delete this;
    return Status::OK();
  }
};

struct Engine : IEngine {
  refit_engine *backend;
  Io inputs, outputs;
  std::atomic<int> creating{0};
  explicit Engine(refit_engine *b) : backend(b), inputs(Describe(b, true)), outputs(Describe(b, false)) {}
  IContext *CreateIContext() override {
    if (creating.fetch_add(1) != 0) {
      std::fprintf(stderr, "stand-in: IEngine::CreateIContext called concurrently on one engine (it is not thread-safe)\n");
      creating.fetch_sub(1);
      return nullptr;
    }
    // Wide enough a window for unguarded concurrent calls to meet.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    refit_context *c = nullptr;
    refit_status s = Backend(nullptr)->context_create(backend, &c);
    creating.fetch_sub(1);
    return s == REFIT_OK ? new Context(this, c) : nullptr;
  }
  Status Destroy() override {
    Backend(nullptr)->engine_destroy(backend);
    delete this;
    return Status::OK();
  }
};

Status Context::CreateInputTensors(std::vector<IRTTensor *> *out) {
  if (!out) return Invalid("CreateInputTensors: NULL");
  out->clear();
  for (size_t i = 0; i < engine->inputs.names.size(); ++i)
    out->push_back(new Tensor(engine->inputs.names[i], engine->inputs.dtypes[i], TensorLocation::kMLU,
                              engine->inputs.dims[i]));
  return Status::OK();
}

Status Context::CreateOutputTensors(std::vector<IRTTensor *> *out) {
  if (!out) return Invalid("CreateOutputTensors: NULL");
  out->clear();
  for (size_t i = 0; i < engine->outputs.names.size(); ++i)
    out->push_back(new Tensor(engine->outputs.names[i], engine->outputs.dtypes[i], TensorLocation::kMLU,
                              engine->outputs.dims[i]));
  return Status::OK();
}

Status Context::InferOutputShape(const std::vector<IRTTensor *> &in, const std::vector<IRTTensor *> &out) {
  if (in.size() != engine->inputs.names.size() || out.size() != engine->outputs.names.size())
    return Invalid("InferOutputShape: tensor counts differ from the model's");
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i]->GetDimensions().GetElementCount() < 0) return Invalid("InferOutputShape: input dims not set");
  for (size_t i = 0; i < out.size(); ++i) {
    Dims d = engine->outputs.dims[i];
    if (d.GetElementCount() < 0) return Status(code::Code::UNAVAILABLE, "output shape depends on the data");
    out[i]->SetDimensions(d);
  }
  return Status::OK();
}

Status Context::Enqueue(const std::vector<IRTTensor *> &in, const std::vector<IRTTensor *> &out, void *queue) {
  cnrtQueue *q = static_cast<cnrtQueue *>(queue);
  if (!q) return Invalid("Enqueue: no queue");
  struct Arg {
    void *data;
    size_t bytes;
    refit_dtype dtype;
    std::vector<int64_t> dims;
  };
  std::vector<Arg> ins, outs;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i]->GetMutableData() || !IsDevice(in[i]->GetMutableData()))
      return Invalid("Enqueue: input '" + in[i]->GetName() + "' has no device memory (SetData with cnrtMalloc'd memory)");
    Arg a = {in[i]->GetMutableData(), static_cast<size_t>(in[i]->GetSize()), ToRefit(in[i]->GetDataType()),
             in[i]->GetDimensions().GetDims()};
    ins.push_back(a);
  }
  {
    std::lock_guard<std::mutex> g(Dev().lock);
    for (size_t i = 0; i < out.size(); ++i) {
      unsigned char *s = Dev().Shadow(out[i]->GetMutableData(), static_cast<size_t>(out[i]->GetSize()));
      if (!s) return Invalid("Enqueue: output '" + out[i]->GetName() + "' has no device memory of its size");
      // Until the queue runs the job, the outputs hold garbage.
      std::memset(s, 0xff, static_cast<size_t>(out[i]->GetSize()));
      Arg a = {out[i]->GetMutableData(), static_cast<size_t>(out[i]->GetSize()), ToRefit(out[i]->GetDataType()),
               out[i]->GetDimensions().GetDims()};
      outs.push_back(a);
    }
  }
  refit_context *b = backend;
  q->Push([ins, outs, b] {
    const refit_plugin_api *api = Backend(nullptr);
    std::vector<std::vector<unsigned char>> host(ins.size());
    std::vector<refit_tensor> args(ins.size());
    {
      std::lock_guard<std::mutex> g(Dev().lock);
      for (size_t i = 0; i < ins.size(); ++i) {
        unsigned char *s = Dev().Shadow(ins[i].data, ins[i].bytes);
        if (s) host[i].assign(s, s + ins[i].bytes);
        else host[i].assign(ins[i].bytes, 0);
        refit_tensor t = {ins[i].dtype, static_cast<uint32_t>(ins[i].dims.size()), ins[i].dims.data(),
                          host[i].data(), ins[i].bytes};
        args[i] = t;
      }
    }
    const refit_tensor *y = nullptr;
    uint32_t n = 0;
    if (api->infer(b, args.data(), static_cast<uint32_t>(args.size()), &y, &n) != REFIT_OK) {
      std::fprintf(stderr, "stand-in: Enqueue failed on the device: %s\n", api->last_error());
      return;
    }
    std::lock_guard<std::mutex> g(Dev().lock);
    for (size_t i = 0; i < outs.size() && i < n; ++i) {
      unsigned char *s = Dev().Shadow(outs[i].data, outs[i].bytes);
      if (s && y[i].byte_len == outs[i].bytes) std::memcpy(s, y[i].data, outs[i].bytes);
    }
  });
  return Status::OK();
}

struct Model : IModel {
  std::string path, options;
  Io inputs, outputs;
  std::atomic<int> creating{0};
  IEngine *CreateIEngine() override {
    refit_engine *e = nullptr;
    const refit_plugin_api *api = Backend(nullptr);
    if (api->engine_create(path.c_str(), options.c_str(), &e) != REFIT_OK) {
      std::fprintf(stderr, "stand-in: CreateIEngine: %s\n", api->last_error());
      return nullptr;
    }
    return new Engine(e);
  }
  int GetInputNum() const override { return static_cast<int>(inputs.names.size()); }
  int GetOutputNum() const override { return static_cast<int>(outputs.names.size()); }
  std::vector<std::string> GetInputNames() const override { return inputs.names; }
  std::vector<std::string> GetOutputNames() const override { return outputs.names; }
  std::vector<Dims> GetInputDimensions() const override { return inputs.dims; }
  std::vector<Dims> GetOutputDimensions() const override { return outputs.dims; }
  std::vector<DataType> GetInputDataTypes() const override { return inputs.dtypes; }
  std::vector<DataType> GetOutputDataTypes() const override { return outputs.dtypes; }
  void Destroy() override { delete this; }
};

struct Builder : IBuilder {
  IModel *BuildModel(const std::string &, INetwork *net, IBuilderConfig *cfg) override {
    last_build_error().clear();
    std::string why;
    const refit_plugin_api *api = Backend(&why);
    Network *n = dynamic_cast<Network *>(net);
    BuilderConfig *c = dynamic_cast<BuilderConfig *>(cfg);
    if (!api || !n || !c) {
      std::fprintf(stderr, "stand-in: BuildModel: %s\n", api ? "not a network or config of this SDK" : why.c_str());
      return nullptr;
    }
    // The model's interface, read from an engine built for it.
    refit_engine *e = nullptr;
    if (api->engine_create(n->model.c_str(), c->json.c_str(), &e) != REFIT_OK) {
      last_build_error() = api->last_error();
      return nullptr;
    }
    Model *m = new Model();
    m->path = n->model;
    m->options = c->json;
    m->inputs = Describe(e, true);
    m->outputs = Describe(e, false);
    api->engine_destroy(e);
    return m;
  }
  void Destroy() override { delete this; }

 public:
  static std::string &last_build_error() {
    static thread_local std::string s;
    return s;
  }
};

struct Refitter : IRefitter {
  refit_refitter *backend;
  explicit Refitter(refit_refitter *r) : backend(r) {}
  Status GetMissingNames(std::vector<std::string> *names) override {
    if (!names) return Invalid("GetMissingNames: NULL");
    const char *const *list = nullptr;
    uint32_t n = 0;
    if (Backend(nullptr)->refitter_missing(backend, &list, &n) != REFIT_OK) return Fail(BackendError());
    names->assign(list, list + n);
    return Status::OK();
  }
  Status SetNamedWeights(const std::string &name, IRTTensor *w) override {
    if (!w) return Invalid("SetNamedWeights: NULL tensor");
    if (w->GetMemoryLocation() != TensorLocation::kHost)
      return Invalid("SetNamedWeights: weights must be a host tensor (TensorLocation::kHost)");
    std::vector<int64_t> dims = w->GetDimensions().GetDims();
    refit_tensor t = {ToRefit(w->GetDataType()), static_cast<uint32_t>(dims.size()), dims.data(),
                      w->GetMutableData(), static_cast<uint64_t>(w->GetSize())};
    refit_status s = Backend(nullptr)->refitter_set_named_weights(backend, name.c_str(), &t);
    if (s != REFIT_OK) return Invalid(BackendError());
    return Status::OK();
  }
  Status RefitEngine() override {
    if (Backend(nullptr)->refitter_refit(backend) != REFIT_OK) return Fail(BackendError());
    return Status::OK();
  }
  void Destroy() override {
    Backend(nullptr)->refitter_destroy(backend);
    delete this;
  }
};

}  // namespace

INetwork *CreateINetwork() { return new Network(); }

template <>
IParser<ModelKind::kOnnx, std::string> *CreateIParser<ModelKind::kOnnx, std::string>() {
  return new OnnxParser();
}

IBuilder *CreateIBuilder() { return new Builder(); }
IBuilderConfig *CreateIBuilderConfig() { return new BuilderConfig(); }

IRTTensor *CreateIRTTensor(DataType dtype, const std::string &name, Layout, TensorLocation loc) {
  return new Tensor(name, dtype, loc, Dims());
}

IRefitter *CreateIRefitter(IEngine *engine) {
  Engine *e = dynamic_cast<Engine *>(engine);
  if (!e) return nullptr;
  refit_refitter *r = nullptr;
  if (Backend(nullptr)->refitter_create(e->backend, &r) != REFIT_OK) return nullptr;
  return new Refitter(r);
}

}  // namespace magicmind

// The stand-in's own diagnostics, for the shim's error messages: why the
// last BuildModel on this thread returned NULL.
extern "C" const char *mm_standin_last_build_error() {
  return magicmind::Builder::last_build_error().c_str();
}
