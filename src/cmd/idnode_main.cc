// idnode: the server. Reads the command line and the configuration, then runs until SIGTERM.
#include <cstdio>
#include <iostream>

#include "idnode/app/app.h"
#include "idnode/config/config.h"

int main(int argc, char** argv) {
  idnode::config::CommandLine cl;
  try {
    cl = idnode::config::ParseCommandLine(argc, argv);
  } catch (const idnode::config::ConfigError& e) {
    std::cerr << "idnode: configuration error:\n" << e.what() << "\n";
    return 2;
  }
  if (cl.help) {
    std::cout << idnode::config::Usage();
    return 0;
  }
  if (cl.version) {
    std::cout << "idnode " << IDNODE_VERSION << " (Handle protocol 2.11)\n";
    return 0;
  }
  auto result = idnode::app::Run(cl.config, cl.config_file);
  if (!result.ok()) {
    std::cerr << "idnode: " << result.error() << "\n";
    return 1;
  }
  return 0;
}
