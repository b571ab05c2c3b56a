#include "cpu/common/settings.h"

#include <atomic>
#include <cstring>
#include <initializer_list>

namespace cnnfast::cpu {

namespace {

std::atomic<int> requested{static_cast<int>(Capability::kAvx512)};
std::atomic<int> winograd{static_cast<int>(Switch::kAuto)};
std::atomic<int> images_per_vector{static_cast<int>(Switch::kAuto)};

}  // namespace

Settings cpu_settings() {
  Settings s;
  const int best = static_cast<int>(supported_capability());
  const int want = requested.load(std::memory_order_relaxed);
  s.capability = static_cast<Capability>(want < best ? want : best);
  s.winograd = static_cast<Switch>(winograd.load(std::memory_order_relaxed));
  s.images_per_vector = static_cast<Switch>(images_per_vector.load(std::memory_order_relaxed));
  return s;
}

void set_capability(Capability c) { requested.store(static_cast<int>(c), std::memory_order_relaxed); }
void set_winograd(Switch s) { winograd.store(static_cast<int>(s), std::memory_order_relaxed); }
void set_images_per_vector(Switch s) { images_per_vector.store(static_cast<int>(s), std::memory_order_relaxed); }

const char* switch_name(Switch s) {
  switch (s) {
    case Switch::kOff: return "off";
    case Switch::kOn: return "on";
    default: return "auto";
  }
}

bool parse_switch(const char* name, Switch* out) {
  for (Switch s : {Switch::kAuto, Switch::kOff, Switch::kOn}) {
    if (std::strcmp(name, switch_name(s)) == 0) {
      *out = s;
      return true;
    }
  }
  return false;
}

}  // namespace cnnfast::cpu
