# Offline stand-in for @rules_java: Bazel 4.2.3's @bazel_tools loads these
# names from it; the native rules are what the real ones forward to.
java_binary = native.java_binary
java_import = native.java_import
java_library = native.java_library
java_proto_library = native.java_proto_library
java_runtime = native.java_runtime
java_toolchain = native.java_toolchain
java_test = native.java_test
