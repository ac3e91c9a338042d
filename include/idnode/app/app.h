// app/: builds the rooms from the configuration, runs them, and shuts them down cleanly.
// Run() is called once from main on the main thread; it returns when SIGTERM or SIGINT arrives
// (after draining) or when startup fails (with the reason).
#pragma once

#include <string>

#include "idnode/common/result.h"
#include "idnode/config/config.h"

namespace idnode::app {

// The identifiers a new node without configured prefixes starts with (so `idctl resolve
// DEMO.1/hello` answers at once).
inline constexpr const char* kDemoPrefix = "DEMO.1";

Result<Unit, std::string> Run(const config::Config& config, const std::string& config_file);

}  // namespace idnode::app
