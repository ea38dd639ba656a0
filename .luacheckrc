std = "lua54"
max_line_length = 120
exclude_files = { "build*/**", "spec/fake/**" }
files["spec/**/*_spec.lua"] = { std = "+busted" }
