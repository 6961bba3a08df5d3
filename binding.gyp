{
  "targets": [
    {
      "target_name": "cstp_transparent",
      "sources": ["native/transparent.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
