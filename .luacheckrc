std = "lua54"
max_line_length = 120
exclude_files = { "build*/**", "spec/fake/**" }
-- specs are tables of cases, written at the project's four-space indentation
files["spec/**/*_spec.lua"] = { std = "+busted", max_line_length = 130 }
