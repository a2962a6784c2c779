// shim.cc -- include/refit_plugin.h over Cambricon MagicMind's public C++ API
// (C++11, like the vendor samples), so that `refit-harness check` and the
// conformance suite run on an MLU runner against MagicMind itself.
//
// Build: plugins/magicmind/build.sh OUT_DIR (against $NEUWARE_HOME when set,
// else against the stand-in SDK in standin/, which is NOT the SDK).
//
// The flow is the vendor's (shared/MAGICMIND_API.md):
// - engine_create: CreateIParser<kOnnx, std::string>()->Parse(network, path);
//   IBuilderConfig::ParseFromString(options) with the harness's options
//   passed through (enable_refit, precision_config, archs, ...) minus the
//   shim's own keys below; BuildModel; CreateIEngine.
// - context_create: CreateIContext (under the engine's lock: it is not
//   thread-safe), its input and output tensors, a queue of its own; device
//   buffers from cnrtMalloc, sized on first use.
// - infer: SetDimensions, InferOutputShape, cnrtMemcpy to the device,
//   Enqueue, cnrtQueueSync, cnrtMemcpy back.
// - refitter_create: CreateIRefitter; set_named_weights: a host IRTTensor
//   over the shim's own copy of the values (the harness's buffer is only
//   valid during the call), SetNamedWeights; refit: RefitEngine.
// Every Status that is not OK becomes a status code and a last_error with
// the SDK's message; no C++ exception escapes.
//
// Shim options (removed before ParseFromString):
// - "weight_names": {"<ONNX initializer>": "<MagicMind name>", ...}.
//   MagicMind may name refittable constants differently from the ONNX
//   initializers (parsed PyTorch models: "main/mm.const/mm.refit_const:0").
//   Without it: an initializer whose name MagicMind lists (GetMissingNames
//   on a fresh refitter) keeps it; failing that, when MagicMind lists as
//   many names as the model has initializers, the n-th name it lists is the
//   n-th initializer. An initializer MagicMind does not list is not
//   refittable and not listed.
// - "declares": {"concurrency": "atomic"|"quiesced", "failed_refit":
//   "rolls_back"|"may_be_partial", "subset": "accepted"|"requires_all",
//   "non_finite": "rejected"|"served"}: the contract the engine declares;
//   default atomic, rolls back, subsets accepted, non-finite rejected (the
//   shim checks values itself), as the vendor promises. The precision is
//   f16 when "precision_config": {"precision_mode"} asks for float16 or
//   qint8 mixed with float16, else f32; "error_factor" (number, >= 1).
// - "device": the MLU ordinal (default 0).
//
// -DSHIM_FAULT_NO_SYNC (no cnrtQueueSync before copying outputs back) and
// -DSHIM_FAULT_NO_CONTEXT_LOCK (CreateIContext unguarded) build it wrong on
// purpose, for the tests that show the harness catching each.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cnrt.h"
#include "mm_builder.h"
#include "mm_parser.h"
#include "mm_runtime.h"
#include "refit_plugin.h"

// The stand-in SDK says why a build failed; the real SDK has no such call.
extern "C" const char *mm_standin_last_build_error() __attribute__((weak));

namespace {

namespace mm = magicmind;

thread_local std::string g_error = "no error";

refit_status Fail(refit_status s, const std::string &m) {
  g_error = m;
  return s;
}

template <typename F>
refit_status Guard(F f) {
  try {
    return f();
  } catch (const std::exception &e) {
    return Fail(REFIT_ERROR, std::string("magicmind shim: ") + e.what());
  } catch (...) {
    return Fail(REFIT_ERROR, "magicmind shim: unknown exception");
  }
}

std::string StatusText(const mm::Status &s) {
  std::string m = s.error_message();
  return m.empty() ? s.ToString() : m;
}

// ---- a small JSON value: the options ----

struct Json {
  enum Kind { Null, Bool, Num, Str, Arr, Obj } kind = Null;
  bool b = false;
  double n = 0;
  std::string s;
  std::vector<Json> a;
  std::vector<std::pair<std::string, Json>> o;

  const Json *Get(const std::string &key) const {
    for (size_t i = 0; i < o.size(); ++i)
      if (o[i].first == key) return &o[i].second;
    return nullptr;
  }
};

struct JsonReader {
  const std::string &t;
  size_t i = 0;
  explicit JsonReader(const std::string &text) : t(text) {}

  void Ws() {
    while (i < t.size() && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) ++i;
  }
  bool Lit(const char *w) {
    size_t n = std::strlen(w);
    if (t.compare(i, n, w) != 0) return false;
    i += n;
    return true;
  }
  bool String(std::string *out) {
    if (i >= t.size() || t[i] != '"') return false;
    ++i;
    while (i < t.size() && t[i] != '"') {
      char c = t[i++];
      if (c == '\\') {
        if (i >= t.size()) return false;
        char e = t[i++];
        switch (e) {
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          case 'b': c = '\b'; break;
          case 'f': c = '\f'; break;
          case 'u':
            if (i + 4 > t.size()) return false;
            c = static_cast<char>(std::strtol(t.substr(i, 4).c_str(), nullptr, 16));
            i += 4;
            break;
          default: c = e;
        }
      }
      out->push_back(c);
    }
    if (i >= t.size()) return false;
    ++i;
    return true;
  }
  bool Value(Json *v, int depth) {
    if (depth > 64) return false;
    Ws();
    if (i >= t.size()) return false;
    char c = t[i];
    if (c == '{') {
      v->kind = Json::Obj;
      ++i;
      Ws();
      if (i < t.size() && t[i] == '}') return ++i, true;
      for (;;) {
        Ws();
        std::pair<std::string, Json> kv;
        if (!String(&kv.first)) return false;
        Ws();
        if (i >= t.size() || t[i] != ':') return false;
        ++i;
        if (!Value(&kv.second, depth + 1)) return false;
        v->o.push_back(kv);
        Ws();
        if (i < t.size() && t[i] == ',') { ++i; continue; }
        if (i < t.size() && t[i] == '}') return ++i, true;
        return false;
      }
    }
    if (c == '[') {
      v->kind = Json::Arr;
      ++i;
      Ws();
      if (i < t.size() && t[i] == ']') return ++i, true;
      for (;;) {
        Json e;
        if (!Value(&e, depth + 1)) return false;
        v->a.push_back(e);
        Ws();
        if (i < t.size() && t[i] == ',') { ++i; continue; }
        if (i < t.size() && t[i] == ']') return ++i, true;
        return false;
      }
    }
    if (c == '"') return v->kind = Json::Str, String(&v->s);
    if (Lit("true")) return v->kind = Json::Bool, v->b = true, true;
    if (Lit("false")) return v->kind = Json::Bool, v->b = false, true;
    if (Lit("null")) return v->kind = Json::Null, true;
    char *end = nullptr;
    v->n = std::strtod(t.c_str() + i, &end);
    if (end == t.c_str() + i) return false;
    i = static_cast<size_t>(end - t.c_str());
    v->kind = Json::Num;
    return true;
  }
};

bool ParseJson(const std::string &text, Json *out) {
  JsonReader r(text);
  if (!r.Value(out, 0)) return false;
  r.Ws();
  return r.i == text.size();
}

void WriteJson(const Json &v, std::string *out) {
  switch (v.kind) {
    case Json::Null: *out += "null"; break;
    case Json::Bool: *out += v.b ? "true" : "false"; break;
    case Json::Num: {
      std::ostringstream os;
      os.precision(17);
      os << v.n;
      *out += os.str();
      break;
    }
    case Json::Str: {
      *out += '"';
      for (size_t i = 0; i < v.s.size(); ++i) {
        char c = v.s[i];
        if (c == '"' || c == '\\') *out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          *out += buf;
        } else {
          *out += c;
        }
      }
      *out += '"';
      break;
    }
    case Json::Arr:
      *out += '[';
      for (size_t i = 0; i < v.a.size(); ++i) {
        if (i) *out += ',';
        WriteJson(v.a[i], out);
      }
      *out += ']';
      break;
    case Json::Obj:
      *out += '{';
      for (size_t i = 0; i < v.o.size(); ++i) {
        if (i) *out += ',';
        Json k;
        k.kind = Json::Str;
        k.s = v.o[i].first;
        WriteJson(k, out);
        *out += ':';
        WriteJson(v.o[i].second, out);
      }
      *out += '}';
      break;
  }
}

// ---- the model's initializers (ONNX protobuf, read directly) ----

struct Init {
  std::string name;
  int32_t onnx_type = 0;
  std::vector<int64_t> dims;
};

struct Pb {
  const unsigned char *p, *end;
  bool Varint(uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) return false;
      unsigned char c = *p++;
      v |= static_cast<uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) return *out = v, true;
    }
    return false;
  }
  // The next field: number, wire type, varint value or sub-message.
  bool Field(uint32_t *num, uint32_t *wire, uint64_t *v, Pb *sub) {
    uint64_t key;
    if (!Varint(&key)) return false;
    *num = static_cast<uint32_t>(key >> 3);
    *wire = static_cast<uint32_t>(key & 7);
    switch (*wire) {
      case 0: return Varint(v);
      case 1: if (end - p < 8) return false; p += 8; return true;
      case 5: if (end - p < 4) return false; p += 4; return true;
      case 2: {
        uint64_t len;
        if (!Varint(&len) || static_cast<uint64_t>(end - p) < len) return false;
        sub->p = p;
        sub->end = p + len;
        p += len;
        return true;
      }
      default: return false;
    }
  }
};

bool ReadInitializers(const std::string &path, std::vector<Init> *out, std::string *why) {
  std::ifstream f(path.c_str(), std::ios::binary);
  if (!f) return *why = "cannot read " + path, false;
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Pb model = {bytes.data(), bytes.data() + bytes.size()};
  uint32_t num, wire;
  uint64_t v;
  Pb sub;
  while (model.p < model.end) {
    if (!model.Field(&num, &wire, &v, &sub)) return *why = path + ": not an ONNX model", false;
    if (num != 7 || wire != 2) continue;
    Pb graph = sub;
    while (graph.p < graph.end) {
      Pb t;
      if (!graph.Field(&num, &wire, &v, &t)) return *why = path + ": malformed graph", false;
      if (num != 5 || wire != 2) continue;
      Init init;
      while (t.p < t.end) {
        Pb s;
        if (!t.Field(&num, &wire, &v, &s)) return *why = path + ": malformed initializer", false;
        if (num == 1 && wire == 0) init.dims.push_back(static_cast<int64_t>(v));
        if (num == 1 && wire == 2)  // packed dims
          while (s.p < s.end && s.Varint(&v)) init.dims.push_back(static_cast<int64_t>(v));
        if (num == 2 && wire == 0) init.onnx_type = static_cast<int32_t>(v);
        if (num == 8 && wire == 2) init.name.assign(reinterpret_cast<const char *>(s.p), s.end - s.p);
      }
      out->push_back(init);
    }
  }
  return true;
}

// ---- types ----

refit_dtype ToRefit(mm::DataType t) {
  return t == mm::DataType::FLOAT16 ? REFIT_F16 : t == mm::DataType::INT32 ? REFIT_I32 : REFIT_F32;
}

mm::DataType FromRefit(refit_dtype t) {
  return t == REFIT_F16 ? mm::DataType::FLOAT16 : t == REFIT_I32 ? mm::DataType::INT32 : mm::DataType::FLOAT32;
}

size_t DtypeSize(refit_dtype t) { return t == REFIT_F16 ? 2 : 4; }

const char *DtypeName(refit_dtype t) { return t == REFIT_F16 ? "f16" : t == REFIT_I32 ? "i32" : "f32"; }

std::string DimsText(const int64_t *d, size_t n) {
  std::string s = "[";
  for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

struct Desc {
  std::string name;
  refit_dtype dtype;
  std::vector<int64_t> dims;
};

struct Weight {
  Desc desc;
  std::string mm_name;
};

// ---- engine, context, refitter ----

struct Engine {
  mm::IModel *model = nullptr;
  mm::IEngine *engine = nullptr;
  std::mutex create_lock;
  int device = 0;
  bool refit_enabled = true;
  refit_engine_info info;
  refit_numerics numerics;
  std::vector<Desc> inputs, outputs;
  std::vector<Weight> weights;

  ~Engine() {
    if (engine) engine->Destroy();
    if (model) model->Destroy();
  }
};

struct Context {
  Engine *engine = nullptr;
  mm::IContext *context = nullptr;
  cnrtQueue_t queue = nullptr;
  std::vector<mm::IRTTensor *> in, out;
  std::vector<void *> in_dev, out_dev;
  std::vector<size_t> in_cap, out_cap;
  std::vector<std::vector<unsigned char>> host;
  std::vector<std::vector<int64_t>> dims;
  std::vector<refit_tensor> views;

  ~Context() {
    if (queue) cnrtQueueSync(queue);
    for (size_t i = 0; i < in.size(); ++i) {
      if (in_dev[i]) cnrtFree(in_dev[i]);
      in[i]->Destroy();
    }
    for (size_t i = 0; i < out.size(); ++i) {
      if (out_dev[i]) cnrtFree(out_dev[i]);
      out[i]->Destroy();
    }
    if (context) context->Destroy();
    if (queue) cnrtQueueDestroy(queue);
  }
};

struct Staged {
  std::vector<unsigned char> bytes;
  mm::IRTTensor *tensor = nullptr;
};

struct Refitter {
  Engine *engine = nullptr;
  mm::IRefitter *refitter = nullptr;
  std::vector<Staged> staged;  // per weight
  std::vector<std::string> missing;
  std::vector<const char *> missing_ptrs;

  void Clear() {
    for (size_t i = 0; i < staged.size(); ++i) {
      if (staged[i].tensor) staged[i].tensor->Destroy();
      staged[i] = Staged();
    }
  }
  ~Refitter() {
    Clear();
    if (refitter) refitter->Destroy();
  }
};

int32_t Pick(const Json *declares, const char *key, const char *a, int32_t va, const char *b, int32_t vb,
             std::string *bad) {
  const Json *v = declares ? declares->Get(key) : nullptr;
  if (!v) return va;
  if (v->kind == Json::Str && v->s == a) return va;
  if (v->kind == Json::Str && v->s == b) return vb;
  *bad = std::string("declares.") + key + ": expected \"" + a + "\" or \"" + b + "\"";
  return va;
}

refit_status CheckCnrt(cnrtRet_t r, const char *call) {
  if (r == cnrtSuccess) return REFIT_OK;
  return Fail(REFIT_ERROR, std::string(call) + " failed: " + cnrtGetErrorStr(r));
}

refit_status EngineCreate(const char *model_path, const char *options_json, refit_engine **out) {
  if (!model_path || !out) return Fail(REFIT_INVALID_ARGUMENT, "model_path or out is NULL");
  std::string path = model_path;
  Json opts;
  if (options_json && !ParseJson(options_json, &opts))
    return Fail(REFIT_INVALID_ARGUMENT, std::string("options_json is not JSON: ") + options_json);
  if (opts.kind == Json::Null) opts.kind = Json::Obj;
  if (opts.kind != Json::Obj) return Fail(REFIT_INVALID_ARGUMENT, "options_json is not a JSON object");

  std::unique_ptr<Engine> e(new Engine());
  const Json *refit = opts.Get("enable_refit");
  e->refit_enabled = !(refit && refit->kind == Json::Bool && !refit->b);
  const Json *device = opts.Get("device");
  if (device && device->kind == Json::Num) e->device = static_cast<int>(device->n);
  const Json *declares = opts.Get("declares");
  if (declares && declares->kind != Json::Obj) return Fail(REFIT_INVALID_ARGUMENT, "options_json: declares is not an object");
  std::string bad;
  e->info.concurrency = Pick(declares, "concurrency", "atomic", REFIT_ATOMIC, "quiesced", REFIT_QUIESCED, &bad);
  e->info.failed_refit =
      Pick(declares, "failed_refit", "rolls_back", REFIT_ROLLS_BACK, "may_be_partial", REFIT_MAY_BE_PARTIAL, &bad);
  e->info.subset = Pick(declares, "subset", "accepted", REFIT_SUBSET_ACCEPTED, "requires_all", REFIT_REQUIRES_ALL, &bad);
  e->info.non_finite =
      Pick(declares, "non_finite", "rejected", REFIT_NON_FINITE_REJECTED, "served", REFIT_NON_FINITE_SERVED, &bad);
  if (!bad.empty()) return Fail(REFIT_INVALID_ARGUMENT, "options_json: " + bad);
  e->info.refit_enabled = e->refit_enabled ? 1 : 0;
  e->info.name = "magicmind";
  e->info.version = MM_VERSION_STR;
  e->numerics.precision = REFIT_PRECISION_F32;
  e->numerics.error_factor = 1.0;
  const Json *pc = opts.Get("precision_config");
  const Json *mode = pc ? pc->Get("precision_mode") : nullptr;
  if (mode && mode->kind == Json::Str && mode->s.find("float16") != std::string::npos)
    e->numerics.precision = REFIT_PRECISION_F16;
  const Json *factor = opts.Get("error_factor");
  if (factor && factor->kind == Json::Num && factor->n >= 1) e->numerics.error_factor = factor->n;

  // The build config: the harness's options minus the shim's own.
  Json config;
  config.kind = Json::Obj;
  for (size_t i = 0; i < opts.o.size(); ++i) {
    const std::string &k = opts.o[i].first;
    if (k != "weight_names" && k != "declares" && k != "device" && k != "error_factor") config.o.push_back(opts.o[i]);
  }
  std::string config_text;
  WriteJson(config, &config_text);

  if (refit_status s = CheckCnrt(cnrtSetDevice(e->device), "cnrtSetDevice")) return s;
  mm::INetwork *net = mm::CreateINetwork();
  mm::IParser<mm::ModelKind::kOnnx, std::string> *parser = mm::CreateIParser<mm::ModelKind::kOnnx, std::string>();
  mm::IBuilderConfig *cfg = mm::CreateIBuilderConfig();
  mm::IBuilder *builder = mm::CreateIBuilder();
  struct Release {
    mm::INetwork *n;
    mm::IParser<mm::ModelKind::kOnnx, std::string> *p;
    mm::IBuilderConfig *c;
    mm::IBuilder *b;
    ~Release() {
      if (b) b->Destroy();
      if (c) c->Destroy();
      if (p) p->Destroy();
      if (n) n->Destroy();
    }
  } release = {net, parser, cfg, builder};
  if (!net || !parser || !cfg || !builder) return Fail(REFIT_ERROR, "a MagicMind factory returned NULL");
  mm::Status st = parser->Parse(net, path);
  // A model the SDK cannot parse or build is unsupported only with the
  // SDK's reason; a failure without one is the SDK's (install, device) and
  // an error.
  if (!st.ok()) {
    std::string why = StatusText(st);
    return Fail(why.empty() ? REFIT_ERROR : REFIT_UNSUPPORTED, "IParser::Parse(" + path + "): " + (why.empty() ? "failed without a reason" : why));
  }
  st = cfg->ParseFromString(config_text);
  if (!st.ok()) return Fail(REFIT_INVALID_ARGUMENT, "IBuilderConfig::ParseFromString(" + config_text + "): " + StatusText(st));
  e->model = builder->BuildModel("refit_harness", net, cfg);
  if (!e->model) {
    std::string why = mm_standin_last_build_error ? mm_standin_last_build_error() : "";
    if (why.empty())
      return Fail(REFIT_ERROR, "IBuilder::BuildModel returned NULL for " + path + " without a reason: the SDK cannot build (is it installed, is a device present?)");
    return Fail(REFIT_UNSUPPORTED, "IBuilder::BuildModel returned NULL for " + path + ": " + why);
  }
  {
    std::lock_guard<std::mutex> g(e->create_lock);
    e->engine = e->model->CreateIEngine();
  }
  if (!e->engine) return Fail(REFIT_ERROR, "IModel::CreateIEngine returned NULL");

  std::vector<std::string> names = e->model->GetInputNames();
  std::vector<mm::Dims> dims = e->model->GetInputDimensions();
  std::vector<mm::DataType> types = e->model->GetInputDataTypes();
  for (size_t i = 0; i < names.size(); ++i) {
    Desc d = {names[i], ToRefit(types[i]), dims[i].GetDims()};
    e->inputs.push_back(d);
  }
  names = e->model->GetOutputNames();
  dims = e->model->GetOutputDimensions();
  types = e->model->GetOutputDataTypes();
  for (size_t i = 0; i < names.size(); ++i) {
    Desc d = {names[i], ToRefit(types[i]), dims[i].GetDims()};
    e->outputs.push_back(d);
  }

  if (e->refit_enabled) {
    std::vector<Init> inits;
    std::string why;
    if (!ReadInitializers(path, &inits, &why)) return Fail(REFIT_UNSUPPORTED, why);
    mm::IRefitter *r = mm::CreateIRefitter(e->engine);
    if (!r) return Fail(REFIT_ERROR, "CreateIRefitter returned NULL (was the model built with enable_refit?)");
    std::vector<std::string> listed;
    st = r->GetMissingNames(&listed);
    r->Destroy();
    if (!st.ok()) return Fail(REFIT_ERROR, "IRefitter::GetMissingNames: " + StatusText(st));
    const Json *map = opts.Get("weight_names");
    if (map && map->kind != Json::Obj) return Fail(REFIT_INVALID_ARGUMENT, "options_json: weight_names is not an object");
    bool by_order = listed.size() == inits.size();
    for (size_t i = 0; i < inits.size(); ++i) {
      const Init &in = inits[i];
      if (in.onnx_type != 1 && in.onnx_type != 10) continue;  // FLOAT, FLOAT16
      std::string mm_name;
      const Json *m = map ? map->Get(in.name) : nullptr;
      if (m && m->kind == Json::Str) mm_name = m->s;
      else if (std::find(listed.begin(), listed.end(), in.name) != listed.end()) mm_name = in.name;
      else if (!map && by_order) mm_name = listed[i];
      if (mm_name.empty()) continue;
      Weight w;
      w.desc.name = in.name;
      w.desc.dtype = in.onnx_type == 10 ? REFIT_F16 : REFIT_F32;
      w.desc.dims = in.dims;
      w.mm_name = mm_name;
      e->weights.push_back(w);
    }
  }
  *out = reinterpret_cast<refit_engine *>(e.release());
  return REFIT_OK;
}

const Engine *AsEngine(const refit_engine *e) { return reinterpret_cast<const Engine *>(e); }

refit_status Describe(const std::vector<Desc> &list, uint32_t index, refit_tensor_desc *out) {
  if (!out) return Fail(REFIT_INVALID_ARGUMENT, "out is NULL");
  if (index >= list.size()) return Fail(REFIT_INVALID_ARGUMENT, "index out of range");
  out->name = list[index].name.c_str();
  out->dtype = list[index].dtype;
  out->rank = static_cast<uint32_t>(list[index].dims.size());
  out->dims = list[index].dims.data();
  return REFIT_OK;
}

refit_status ContextCreate(refit_engine *engine, refit_context **out) {
  Engine *e = reinterpret_cast<Engine *>(engine);
  if (!e || !out) return Fail(REFIT_INVALID_ARGUMENT, "engine or out is NULL");
  std::unique_ptr<Context> c(new Context());
  c->engine = e;
  if (refit_status s = CheckCnrt(cnrtSetDevice(e->device), "cnrtSetDevice")) return s;
  {
#ifndef SHIM_FAULT_NO_CONTEXT_LOCK
    std::lock_guard<std::mutex> g(e->create_lock);
#endif
    c->context = e->engine->CreateIContext();
  }
  if (!c->context) return Fail(REFIT_ERROR, "IEngine::CreateIContext returned NULL");
  mm::Status st = c->context->CreateInputTensors(&c->in);
  if (st.ok()) st = c->context->CreateOutputTensors(&c->out);
  if (!st.ok()) return Fail(REFIT_ERROR, "creating the context's tensors: " + StatusText(st));
  c->in_dev.assign(c->in.size(), nullptr);
  c->in_cap.assign(c->in.size(), 0);
  c->out_dev.assign(c->out.size(), nullptr);
  c->out_cap.assign(c->out.size(), 0);
  if (refit_status s = CheckCnrt(cnrtQueueCreate(&c->queue), "cnrtQueueCreate")) return s;
  *out = reinterpret_cast<refit_context *>(c.release());
  return REFIT_OK;
}

// Device memory of at least `bytes` for a tensor, grown as needed.
refit_status Room(mm::IRTTensor *t, void **dev, size_t *cap, size_t bytes) {
  if (!*dev || *cap < bytes) {
    if (*dev) cnrtFree(*dev);
    *dev = nullptr;
    *cap = 0;
    if (refit_status s = CheckCnrt(cnrtMalloc(dev, bytes ? bytes : 1), "cnrtMalloc")) return s;
    *cap = bytes;
  }
  mm::Status st = t->SetData(*dev);
  return st.ok() ? REFIT_OK : Fail(REFIT_ERROR, "IRTTensor::SetData: " + StatusText(st));
}

refit_status Infer(refit_context *context, const refit_tensor *inputs, uint32_t n, const refit_tensor **outputs,
                   uint32_t *n_out) {
  Context *c = reinterpret_cast<Context *>(context);
  if (!c || !outputs || !n_out || (n && !inputs)) return Fail(REFIT_INVALID_ARGUMENT, "a NULL argument");
  const Engine *e = c->engine;
  if (n != c->in.size())
    return Fail(REFIT_SHAPE_MISMATCH, "expected " + std::to_string(c->in.size()) + " inputs, got " + std::to_string(n));
  for (uint32_t i = 0; i < n; ++i) {
    const refit_tensor &t = inputs[i];
    const Desc &d = e->inputs[i];
    if (t.dtype != d.dtype)
      return Fail(REFIT_DTYPE_MISMATCH, "input '" + d.name + "': expected " + DtypeName(d.dtype) + ", found " +
                                            DtypeName(t.dtype));
    bool fits = t.rank == d.dims.size();
    uint64_t count = 1;
    for (uint32_t k = 0; fits && k < t.rank; ++k) {
      fits = t.dims[k] > 0 && (d.dims[k] < 0 || d.dims[k] == t.dims[k]);
      count *= static_cast<uint64_t>(t.dims[k]);
    }
    if (!fits)
      return Fail(REFIT_SHAPE_MISMATCH, "input '" + d.name + "': expected shape " + DimsText(d.dims.data(), d.dims.size()) +
                                            ", found " + DimsText(t.dims, t.rank));
    if (t.byte_len != count * DtypeSize(t.dtype) || !t.data)
      return Fail(REFIT_SHAPE_MISMATCH, "input '" + d.name + "': " + std::to_string(t.byte_len) +
                                            " bytes for shape " + DimsText(t.dims, t.rank));
    mm::Status st = c->in[i]->SetDimensions(mm::Dims(std::vector<int64_t>(t.dims, t.dims + t.rank)));
    if (!st.ok()) return Fail(REFIT_ERROR, "IRTTensor::SetDimensions: " + StatusText(st));
  }
  mm::Status st = c->context->InferOutputShape(c->in, c->out);
  if (!st.ok()) return Fail(REFIT_ERROR, "IContext::InferOutputShape: " + StatusText(st));
  for (uint32_t i = 0; i < n; ++i) {
    size_t bytes = static_cast<size_t>(c->in[i]->GetSize());
    if (refit_status s = Room(c->in[i], &c->in_dev[i], &c->in_cap[i], bytes)) return s;
    if (refit_status s = CheckCnrt(cnrtMemcpy(c->in_dev[i], const_cast<void *>(inputs[i].data), bytes,
                                              CNRT_MEM_TRANS_DIR_HOST2DEV),
                                   "cnrtMemcpy (host to device)"))
      return s;
  }
  for (size_t i = 0; i < c->out.size(); ++i)
    if (refit_status s = Room(c->out[i], &c->out_dev[i], &c->out_cap[i], static_cast<size_t>(c->out[i]->GetSize())))
      return s;
  st = c->context->Enqueue(c->in, c->out, c->queue);
  if (!st.ok()) return Fail(REFIT_ERROR, "IContext::Enqueue: " + StatusText(st));
#ifndef SHIM_FAULT_NO_SYNC
  if (refit_status s = CheckCnrt(cnrtQueueSync(c->queue), "cnrtQueueSync")) return s;
#endif
  c->host.resize(c->out.size());
  c->dims.resize(c->out.size());
  c->views.resize(c->out.size());
  for (size_t i = 0; i < c->out.size(); ++i) {
    size_t bytes = static_cast<size_t>(c->out[i]->GetSize());
    c->host[i].resize(bytes);
    if (refit_status s = CheckCnrt(cnrtMemcpy(c->host[i].data(), c->out_dev[i], bytes, CNRT_MEM_TRANS_DIR_DEV2HOST),
                                   "cnrtMemcpy (device to host)"))
      return s;
    c->dims[i] = c->out[i]->GetDimensions().GetDims();
    refit_tensor v = {ToRefit(c->out[i]->GetDataType()), static_cast<uint32_t>(c->dims[i].size()), c->dims[i].data(),
                      c->host[i].data(), bytes};
    c->views[i] = v;
  }
  *outputs = c->views.data();
  *n_out = static_cast<uint32_t>(c->views.size());
  return REFIT_OK;
}

refit_status RefitterCreate(refit_engine *engine, refit_refitter **out) {
  Engine *e = reinterpret_cast<Engine *>(engine);
  if (!e || !out) return Fail(REFIT_INVALID_ARGUMENT, "engine or out is NULL");
  if (!e->refit_enabled) return Fail(REFIT_DISABLED, "the engine was built without enable_refit");
  std::unique_ptr<Refitter> r(new Refitter());
  r->engine = e;
  r->refitter = mm::CreateIRefitter(e->engine);
  if (!r->refitter) return Fail(REFIT_ERROR, "CreateIRefitter returned NULL");
  r->staged.resize(e->weights.size());
  *out = reinterpret_cast<refit_refitter *>(r.release());
  return REFIT_OK;
}

bool Finite(const unsigned char *p, size_t n, refit_dtype t, size_t *bad) {
  if (t == REFIT_F32) {
    for (size_t i = 0; i < n / 4; ++i) {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      if (!std::isfinite(f)) return *bad = i, false;
    }
  } else if (t == REFIT_F16) {
    for (size_t i = 0; i < n / 2; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      if ((h & 0x7c00) == 0x7c00) return *bad = i, false;
    }
  }
  return true;
}

refit_status SetNamedWeights(refit_refitter *refitter, const char *name, const refit_tensor *t) {
  Refitter *r = reinterpret_cast<Refitter *>(refitter);
  if (!r || !name || !t) return Fail(REFIT_INVALID_ARGUMENT, "a NULL argument");
  const Engine *e = r->engine;
  size_t index = e->weights.size();
  for (size_t i = 0; i < e->weights.size(); ++i)
    if (e->weights[i].desc.name == name) index = i;
  if (index == e->weights.size()) {
    std::string known;
    for (size_t i = 0; i < e->weights.size(); ++i) known += (i ? ", '" : "'") + e->weights[i].desc.name + "'";
    return Fail(REFIT_UNKNOWN_WEIGHT, std::string("no refittable weight '") + name + "'; known: " + known);
  }
  const Weight &w = e->weights[index];
  std::string what = "weight '" + w.desc.name + "'";
  if (t->dtype != w.desc.dtype)
    return Fail(REFIT_DTYPE_MISMATCH,
                what + ": expected " + DtypeName(w.desc.dtype) + ", found " + DtypeName(t->dtype));
  bool same = t->rank == w.desc.dims.size();
  uint64_t count = 1;
  for (uint32_t k = 0; same && k < t->rank; ++k) same = t->dims[k] == w.desc.dims[k];
  for (size_t k = 0; k < w.desc.dims.size(); ++k) count *= static_cast<uint64_t>(w.desc.dims[k]);
  if (!same)
    return Fail(REFIT_SHAPE_MISMATCH, what + ": expected shape " + DimsText(w.desc.dims.data(), w.desc.dims.size()) +
                                          ", found " + DimsText(t->dims, t->rank));
  if (t->byte_len != count * DtypeSize(t->dtype) || (t->byte_len && !t->data))
    return Fail(REFIT_SHAPE_MISMATCH, what + ": expected " + std::to_string(count * DtypeSize(t->dtype)) +
                                          " bytes, found " + std::to_string(t->byte_len));
  const unsigned char *p = static_cast<const unsigned char *>(t->data);
  size_t bad = 0;
  if (e->info.non_finite == REFIT_NON_FINITE_REJECTED && !Finite(p, t->byte_len, t->dtype, &bad))
    return Fail(REFIT_NON_FINITE, what + ": value " + std::to_string(bad) + " is not finite");
  // The harness's buffer is valid only during this call: the tensor points
  // at the shim's own copy until RefitEngine has consumed it.
  Staged next;
  next.bytes.assign(p, p + t->byte_len);
  next.tensor = mm::CreateIRTTensor(FromRefit(t->dtype), "_unused", mm::Layout::ARRAY, mm::TensorLocation::kHost);
  if (!next.tensor) return Fail(REFIT_ERROR, "CreateIRTTensor returned NULL");
  mm::Status st = next.tensor->SetDimensions(mm::Dims(w.desc.dims));
  if (st.ok()) st = next.tensor->SetData(next.bytes.data());
  if (st.ok()) st = r->refitter->SetNamedWeights(w.mm_name, next.tensor);
  if (!st.ok()) {
    next.tensor->Destroy();
    return Fail(REFIT_ERROR, "IRefitter::SetNamedWeights('" + w.mm_name + "'): " + StatusText(st));
  }
  if (r->staged[index].tensor) r->staged[index].tensor->Destroy();
  r->staged[index].bytes.swap(next.bytes);
  r->staged[index].tensor = next.tensor;
  return REFIT_OK;
}

refit_status Missing(refit_refitter *refitter, const char *const **names, uint32_t *count) {
  Refitter *r = reinterpret_cast<Refitter *>(refitter);
  if (!r || !names || !count) return Fail(REFIT_INVALID_ARGUMENT, "a NULL argument");
  std::vector<std::string> listed;
  mm::Status st = r->refitter->GetMissingNames(&listed);
  if (!st.ok()) return Fail(REFIT_ERROR, "IRefitter::GetMissingNames: " + StatusText(st));
  r->missing.clear();
  for (size_t i = 0; i < r->engine->weights.size(); ++i) {
    const Weight &w = r->engine->weights[i];
    if (std::find(listed.begin(), listed.end(), w.mm_name) != listed.end()) r->missing.push_back(w.desc.name);
  }
  r->missing_ptrs.clear();
  for (size_t i = 0; i < r->missing.size(); ++i) r->missing_ptrs.push_back(r->missing[i].c_str());
  *names = r->missing_ptrs.data();
  *count = static_cast<uint32_t>(r->missing_ptrs.size());
  return REFIT_OK;
}

refit_status Refit(refit_refitter *refitter) {
  Refitter *r = reinterpret_cast<Refitter *>(refitter);
  if (!r) return Fail(REFIT_INVALID_ARGUMENT, "the refitter is NULL");
  bool any = false;
  for (size_t i = 0; i < r->staged.size(); ++i) any = any || r->staged[i].tensor;
  if (!any) return REFIT_OK;
  mm::Status st = r->refitter->RefitEngine();
  if (!st.ok()) {
    std::string m = StatusText(st);
    bool missing = m.find("missing") != std::string::npos || m.find("Missing") != std::string::npos;
    return Fail(missing ? REFIT_MISSING_WEIGHTS : REFIT_ERROR, "IRefitter::RefitEngine: " + m);
  }
  r->Clear();
  return REFIT_OK;
}

// ---- the C entry points ----

extern "C" {

refit_status mm_engine_create(const char *m, const char *o, refit_engine **out) {
  return Guard([&] { return EngineCreate(m, o, out); });
}
void mm_engine_destroy(refit_engine *e) {
  try {
    delete reinterpret_cast<Engine *>(e);
  } catch (...) {
  }
}
refit_status mm_engine_describe(const refit_engine *e, refit_engine_info *out) {
  if (!e || !out) return Fail(REFIT_INVALID_ARGUMENT, "engine or out is NULL");
  *out = AsEngine(e)->info;
  return REFIT_OK;
}
refit_status mm_engine_numerics(const refit_engine *e, refit_numerics *out) {
  if (!e || !out) return Fail(REFIT_INVALID_ARGUMENT, "engine or out is NULL");
  *out = AsEngine(e)->numerics;
  return REFIT_OK;
}
refit_status mm_input_count(const refit_engine *e, uint32_t *n) {
  if (!e || !n) return Fail(REFIT_INVALID_ARGUMENT, "engine or count is NULL");
  *n = static_cast<uint32_t>(AsEngine(e)->inputs.size());
  return REFIT_OK;
}
refit_status mm_input(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
  if (!e) return Fail(REFIT_INVALID_ARGUMENT, "engine is NULL");
  return Describe(AsEngine(e)->inputs, i, out);
}
refit_status mm_output_count(const refit_engine *e, uint32_t *n) {
  if (!e || !n) return Fail(REFIT_INVALID_ARGUMENT, "engine or count is NULL");
  *n = static_cast<uint32_t>(AsEngine(e)->outputs.size());
  return REFIT_OK;
}
refit_status mm_output(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
  if (!e) return Fail(REFIT_INVALID_ARGUMENT, "engine is NULL");
  return Describe(AsEngine(e)->outputs, i, out);
}
refit_status mm_weight_count(const refit_engine *e, uint32_t *n) {
  if (!e || !n) return Fail(REFIT_INVALID_ARGUMENT, "engine or count is NULL");
  *n = static_cast<uint32_t>(AsEngine(e)->weights.size());
  return REFIT_OK;
}
refit_status mm_weight(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
  if (!e || !out) return Fail(REFIT_INVALID_ARGUMENT, "engine or out is NULL");
  const std::vector<Weight> &w = AsEngine(e)->weights;
  if (i >= w.size()) return Fail(REFIT_INVALID_ARGUMENT, "index out of range");
  out->name = w[i].desc.name.c_str();
  out->dtype = w[i].desc.dtype;
  out->rank = static_cast<uint32_t>(w[i].desc.dims.size());
  out->dims = w[i].desc.dims.data();
  return REFIT_OK;
}
refit_status mm_context_create(refit_engine *e, refit_context **out) {
  return Guard([&] { return ContextCreate(e, out); });
}
void mm_context_destroy(refit_context *c) {
  try {
    delete reinterpret_cast<Context *>(c);
  } catch (...) {
  }
}
refit_status mm_infer(refit_context *c, const refit_tensor *in, uint32_t n, const refit_tensor **out,
                      uint32_t *n_out) {
  return Guard([&] { return Infer(c, in, n, out, n_out); });
}
refit_status mm_refitter_create(refit_engine *e, refit_refitter **out) {
  return Guard([&] { return RefitterCreate(e, out); });
}
void mm_refitter_destroy(refit_refitter *r) {
  try {
    delete reinterpret_cast<Refitter *>(r);
  } catch (...) {
  }
}
refit_status mm_set_named_weights(refit_refitter *r, const char *name, const refit_tensor *t) {
  return Guard([&] { return SetNamedWeights(r, name, t); });
}
refit_status mm_missing(refit_refitter *r, const char *const **names, uint32_t *count) {
  return Guard([&] { return Missing(r, names, count); });
}
refit_status mm_refit(refit_refitter *r) {
  return Guard([&] { return Refit(r); });
}
const char *mm_last_error(void) { return g_error.c_str(); }

}  // extern "C"

const refit_plugin_api kApi = {
    REFIT_PLUGIN_ABI_VERSION, static_cast<uint32_t>(sizeof(refit_plugin_api)),
    mm_engine_create, mm_engine_destroy, mm_engine_describe,
    mm_input_count, mm_input, mm_output_count, mm_output, mm_weight_count, mm_weight,
    mm_context_create, mm_context_destroy, mm_infer,
    mm_refitter_create, mm_refitter_destroy, mm_set_named_weights, mm_missing, mm_refit,
    mm_last_error, mm_engine_numerics,
    nullptr /* engine_numerics_ext: the harness's default allowances */};

}  // namespace

extern "C" REFIT_EXPORT const refit_plugin_api *refit_plugin_get_api(uint32_t abi_version) {
  return abi_version == REFIT_PLUGIN_ABI_VERSION ? &kApi : nullptr;
}
