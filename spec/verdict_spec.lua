-- vt.verdict: Cortex XSOAR's VirusTotal scoring on the samples (spec/fake/samples,
-- spec/fixtures/verdicts) and on crafted objects. Every expected verdict, count and reason below
-- was worked out by hand from the rules in docs/verdict.md and the numbers in each object.
local vt = require "vt"
local samples = require "helpers.samples"
local verdict = require "vt.verdict"
local fake = require "helpers.fake"

-- The scores XSOAR gives each verdict (DBot scores).
local SCORE = { malicious = 3, suspicious = 2, harmless = 1, unknown = 0 }

-- A sample as the client hands it over (helpers.samples), noted as used.
local USED = {}
local function sample(path)
    USED[path] = true
    return samples.read(path)
end

local V3 = "spec/fake/samples/v3/"
local V2 = "spec/fake/samples/v2/"
local MORE = "spec/fixtures/verdicts/"

-- ------------------------------------------------------------- crafted objects

local function stats(malicious, suspicious, undetected, harmless, extra)
    local s = { malicious = malicious, suspicious = suspicious or 0, undetected = undetected or 0,
        harmless = harmless or 0, timeout = 0 }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
end

-- engine -> category, as last_analysis_results
local function results(categories)
    local out = {}
    for engine, category in pairs(categories) do
        out[engine] = { category = category, engine_name = engine }
    end
    return out
end

local function yara(n)
    local list = {}
    for i = 1, n do list[i] = { rule_name = "rule_" .. i, ruleset_name = "set" } end
    return list
end

-- popularity_ranks from a list of ranks
local function ranks(list)
    local out = {}
    for i, rank in ipairs(list) do out["List" .. i] = { rank = rank, timestamp = 1700000000 } end
    return out
end

local TYPES = { file = "file", url = "url", domain = "domain", ip = "ip_address" }
local IDS = { file = ("ab"):rep(32), url = ("cd"):rep(32), domain = "crafted.example", ip = "192.0.2.7" }

-- A v3 object: `attrs` are its attributes.
local function object(kind, attrs)
    return { type = TYPES[kind], id = IDS[kind], attributes = attrs }
end

local function analysed(kind, s, more)
    local attrs = { last_analysis_stats = s }
    for k, v in pairs(more or {}) do attrs[k] = v end
    return object(kind, attrs)
end

-- A v2 domain report listing detected communicating samples with these positives.
local function v2_domain(positives, more)
    local list = {}
    for i, p in ipairs(positives) do
        list[i] = { date = "2019-05-01 00:00:00", positives = p, total = 70, sha256 = ("%064x"):format(i) }
    end
    local body = { response_code = 1, verbose_msg = "Domain found in dataset", subdomains = {},
        detected_communicating_samples = list }
    for k, v in pairs(more or {}) do body[k] = v end
    return body
end

local BELOW_0_OF_70 =
    "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 70 engines"
local NO_STATS = "no analysis yet: the object has no last_analysis_stats"
local NOT_COUNTED = "related files not counted (the policy's related is not true)"
local FIVE = { "A", "B", "C", "D", "E" }

local function twenty_then_bad()
    local list = {}
    for i = 1, 20 do list[i] = 1 end
    for i = 21, 25 do list[i] = 50 end
    return list
end

-- name, object, policy, then the verdict, the object's own counts and the reasons, by hand.
local CASES = {
    -- the samples (default policy unless a policy is given)
    { "v3 Win32 EXE sample: 7 of 72", sample(V3 .. "file_win32exe_417c0670.json"), nil,
        "suspicious", 7, 0, 72, { "7 of 72 engines say malicious or suspicious (threshold 5)" } },
    { "v3 Win32 EXE sample, two of five preferred vendors (threshold 2)",
        sample(V3 .. "file_win32exe_417c0670.json"),
        { preferred_vendors = { "Google", "Ikarus", "Microsoft", "Kaspersky", "BitDefender" }, preferred_threshold = 2 },
        "malicious", 7, 0, 72, { "2 of 5 preferred vendors say malicious (threshold 2)" } },
    { "v3 Win32 EXE sample, two of five preferred vendors (default threshold 5)",
        sample(V3 .. "file_win32exe_417c0670.json"),
        { preferred_vendors = { "Google", "Ikarus", "Microsoft", "Kaspersky", "BitDefender" } },
        "suspicious", 7, 0, 72, { "2 of 5 preferred vendors say malicious (threshold 5)",
            "7 of 72 engines say malicious or suspicious (threshold 5)" } },
    { "v3 ELF sample: 0 of 61", sample(V3 .. "file_elf_de10ba5e.json"), nil, "harmless", 0, 0, 61,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 61 engines" } },
    { "v3 MS Word sample: 53 of 62", sample(V3 .. "file_msword_001015aa.json"), nil, "malicious", 53, 0, 62,
        { "53 of 62 engines say malicious (threshold 10)" } },
    { "v3 file sample (pwelch): 57 of 70", sample(V3 .. "pwelch_file_find.200.json"), nil, "malicious", 57, 0, 70,
        { "57 of 70 engines say malicious (threshold 10)" } },
    { "v3 domain haiku-os.org: ranks average 505632.7, 0 of 94", sample(V3 .. "domain_haiku-os.org.json"), nil,
        "harmless", 0, 0, 94, { "not popular enough: average rank 505632.7 > 10000",
            "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 94 engines" } },
    { "v3 domain github.com: ranks 105, 2609, 29, 165, no analysis",
        sample(V3 .. "ninoseki_domain_get_github.com.200.json"),
        nil, "harmless", 0, 0, 0, { "popular domain: average rank 727 ≤ 10000" } },
    { "v3 domain github.com, popularity off", sample(V3 .. "ninoseki_domain_get_github.com.200.json"),
        { domain = { popularity_rank = false } }, "unknown", 0, 0, 0, { NO_STATS, NOT_COUNTED } },
    { "v3 domain virustotal.com: ranks average 6530", sample(V3 .. "pwelch_domain.200.json"), nil,
        "harmless", 0, 0, 94, { "popular domain: average rank 6530 ≤ 10000" } },
    { "v3 domain virustotal.com, rank threshold 6529", sample(V3 .. "pwelch_domain.200.json"),
        { popularity_rank = 6529 }, "harmless", 0, 0, 94, { "not popular enough: average rank 6530 > 6529",
            "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 94 engines" } },
    { "v3 IP 1.1.1.1 without analysis", sample(V3 .. "ninoseki_ip_get_1.1.1.1.200.json"), nil,
        "unknown", 0, 0, 0, { NO_STATS, NOT_COUNTED } },
    { "v3 IP 8.8.8.8: 0 of 94", sample(V3 .. "pwelch_ip.200.json"), nil, "harmless", 0, 0, 94,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 94 engines" } },
    { "v3 URL example.com: 0 of 71", sample(V3 .. "ninoseki_url_get_example.com.200.json"), nil, "harmless", 0, 0, 71,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 71 engines" } },
    { "v3 URL dropbox: 5 of 90", sample(V3 .. "pwelch_url_encoding_find.200.json"), nil, "suspicious", 5, 0, 90,
        { "5 of 90 engines say malicious or suspicious (threshold 5)" } },
    { "v3 URL dropbox, two of three preferred vendors", sample(V3 .. "pwelch_url_encoding_find.200.json"),
        { url = { preferred_vendors = { "Fortinet", "ESET", "Google Safebrowsing" }, preferred_threshold = 2 } },
        "malicious", 5, 0, 90, { "2 of 3 preferred vendors say malicious (threshold 2)" } },
    { "v3 URL google.com (pwelch): 0 of 79", sample(V3 .. "pwelch_url_find.200.json"), nil, "harmless", 0, 0, 79,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 79 engines" } },
    { "v3 URL analysis (ninoseki): 0 of 71", sample(V3 .. "ninoseki_analysis_get_url_completed.200.json"), nil,
        "harmless", 0, 0, 71,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 71 engines" } },
    { "v3 URL analysis (pwelch), URL threshold 1 for suspicious", sample(V3 .. "pwelch_analysis.200.json"),
        { url = { suspicious = 1 } }, "harmless", 0, 0, 79,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 1) of 79 engines" } },
    { "v2 file report: 0 of 56", sample(V2 .. "ninoseki_v2_file_report.200.json"), nil, "harmless", 0, 0, 56,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 56 engines" } },
    { "v2 URL report: 0 of 66", sample(V2 .. "ninoseki_v2_url_report.200.json"), nil, "harmless", 0, 0, 66,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 66 engines" } },
    { "v2 domain report github.com, related files not asked",
        sample(V2 .. "ninoseki_v2_domain_report_github.com.200.json"), nil, "unknown", 0, 0, 0,
        { "a v2 domain report has no engine verdicts of its own", NOT_COUNTED } },
    { "v2 domain report github.com, related files from the report",
        sample(V2 .. "ninoseki_v2_domain_report_github.com.200.json"), { related = true }, "malicious", 0, 0, 0,
        { "a v2 domain report has no engine verdicts of its own",
            "communicating files (20 counted): 5 malicious (threshold 3), 5 malicious or suspicious (threshold 2)" } },
    { "v2 IP report 1.1.1.1, related files from the report",
        sample(V2 .. "ninoseki_v2_ip_address_report_1.1.1.1.200.json"), { related = true }, "malicious", 0, 0, 0,
        { "a v2 IP address report has no engine verdicts of its own",
            "communicating files (20 counted): 11 malicious (threshold 3), 13 malicious or suspicious (threshold 2)" } },
    { "v2 IP report 1.1.1.1, related malicious threshold 12",
        sample(V2 .. "ninoseki_v2_ip_address_report_1.1.1.1.200.json"), { related = true, ip = { related_malicious = 12 } },
        "suspicious", 0, 0, 0,
        { "a v2 IP address report has no engine verdicts of its own",
            "communicating files (20 counted): 11 malicious (threshold 12), 13 malicious or suspicious (threshold 2)",
            "downloaded files (1 counted): 1 malicious (threshold 12), 1 malicious or suspicious (threshold 2)",
            "referrer files (20 counted): 10 malicious (threshold 12), 11 malicious or suspicious (threshold 2)" } },
    { "v2 domain report not found", sample(MORE .. "ninoseki_v2_domain_report_not_found.200.json"), nil,
        "unknown", 0, 0, 0, { "not in VirusTotal's dataset: response_code 0 (Domain not found)" } },
    { "v2 file scan queued", sample(MORE .. "ninoseki_v2_file_scan.200.json"), nil, "unknown", 0, 0, 0,
        { "no report yet: the scan is queued (Scan request successfully queued, come back later for the report)" } },
    { "v2 URL scan queued", sample(MORE .. "ninoseki_v2_url_scan.200.json"), nil, "unknown", 0, 0, 0,
        { "no report yet: the scan is queued (Scan request successfully queued, come back later for the report)" } },
    { "v2 file rescan queued", sample(MORE .. "ninoseki_v2_file_rescan.200.json"), nil, "unknown", 0, 0, 0,
        { "no report yet: the scan is queued" } },
    { "v2 file report (SecOps example): 54 of 60", sample(MORE .. "scan_hash_JsonResult_example.json"), nil,
        "malicious", 54, 0, 60, { "54 of 60 engines say malicious (threshold 10)" } },
    { "v2 file report (SecOps example), preferred vendors from its two scans",
        sample(MORE .. "scan_hash_JsonResult_example.json"),
        { file = { malicious = 60, preferred_vendors = { "Bkav", "MicroWorld-eScan", "Microsoft" },
            preferred_threshold = 2 } },
        "malicious", 54, 0, 60, { "2 of 2 preferred vendors say malicious (threshold 2)" } },
    { "v2 URL report (SecOps example): 5 of 67", sample(MORE .. "scan_url_JsonResult_example.json"), nil,
        "suspicious", 5, 0, 67, { "5 of 67 engines say malicious or suspicious (threshold 5)" } },
    { "v2 file report with allinfo (SecOps example): 0 of 61",
        sample(MORE .. "upload_and_scan_file_JsonResult_example.json"),
        nil, "harmless", 0, 0, 61,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 61 engines" } },
    { "v2 domain report (SecOps example): Alexa rank 100", sample(MORE .. "get_domain_report_JsonResult_example.json"),
        nil, "harmless", 0, 0, 0, { "popular domain: average rank 100 ≤ 10000" } },
    { "v2 IP report (SecOps example), related files", sample(MORE .. "scan_ip_JsonResult_example.json"),
        { related = true }, "harmless", 0, 0, 0,
        { "a v2 IP address report has no engine verdicts of its own",
            "communicating files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)",
            "downloaded files (1 counted): 0 malicious (threshold 3), 1 malicious or suspicious (threshold 2)",
            "referrer files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)" } },
    { "v2 IP report (SecOps example), related suspicious threshold 1", sample(MORE .. "scan_ip_JsonResult_example.json"),
        { related = true, related_suspicious = 1 }, "suspicious", 0, 0, 0,
        { "a v2 IP address report has no engine verdicts of its own",
            "communicating files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 1)",
            "downloaded files (1 counted): 0 malicious (threshold 3), 1 malicious or suspicious (threshold 1)",
            "referrer files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 1)" } },

    -- engine thresholds (files: malicious 10, suspicious 5)
    { "malicious exactly at the threshold", analysed("file", stats(10, 0, 60)), nil, "malicious", 10, 0, 70,
        { "10 of 70 engines say malicious (threshold 10)" } },
    { "malicious one below the threshold", analysed("file", stats(9, 0, 61)), nil, "suspicious", 9, 0, 70,
        { "9 of 70 engines say malicious or suspicious (threshold 5)" } },
    { "malicious + suspicious exactly at the suspicious threshold", analysed("file", stats(3, 2, 65)), nil,
        "suspicious", 3, 2, 70, { "5 of 70 engines say malicious or suspicious (threshold 5)" } },
    { "malicious + suspicious one below the suspicious threshold", analysed("file", stats(3, 1, 66)), nil,
        "harmless", 3, 1, 70,
        { "below the thresholds: 3 malicious (threshold 10), 4 malicious or suspicious (threshold 5) of 70 engines" } },
    { "suspicious engines never make it malicious", analysed("file", stats(9, 10, 51)), nil, "suspicious", 9, 10, 70,
        { "19 of 70 engines say malicious or suspicious (threshold 5)" } },
    { "total counts engines with a verdict only",
        analysed("file", stats(1, 0, 50, 9, { ["type-unsupported"] = 10, failure = 2, timeout = 3 })), nil,
        "harmless", 1, 0, 60,
        { "below the thresholds: 1 malicious (threshold 10), 1 malicious or suspicious (threshold 5) of 60 engines" } },

    -- per-type overrides
    { "file malicious threshold 5, at it", analysed("file", stats(5, 0, 65)), { file = { malicious = 5 } },
        "malicious", 5, 0, 70, { "5 of 70 engines say malicious (threshold 5)" } },
    { "file malicious threshold 5, one below", analysed("file", stats(4, 0, 66)), { file = { malicious = 5 } },
        "harmless", 4, 0, 70,
        { "below the thresholds: 4 malicious (threshold 5), 4 malicious or suspicious (threshold 5) of 70 engines" } },
    { "the URL's own threshold beats the top level", analysed("url", stats(5, 0, 10, 75)),
        { malicious = 3, url = { malicious = 20 } }, "suspicious", 5, 0, 90,
        { "5 of 90 engines say malicious or suspicious (threshold 5)" } },
    { "a domain takes the top level's threshold", analysed("domain", stats(3, 0, 10, 80)),
        { malicious = 3, url = { malicious = 20 } }, "malicious", 3, 0, 93,
        { "3 of 93 engines say malicious (threshold 3)" } },
    { "the domain's own suspicious threshold", analysed("domain", stats(0, 5, 10, 80)),
        { suspicious = 2, domain = { suspicious = 6 } }, "harmless", 0, 5, 95,
        { "below the thresholds: 0 malicious (threshold 10), 5 malicious or suspicious (threshold 6) of 95 engines" } },
    { "an IP takes the top level's suspicious threshold", analysed("ip", stats(0, 2, 10, 80)),
        { suspicious = 2, domain = { suspicious = 6 } }, "suspicious", 0, 2, 92,
        { "2 of 92 engines say malicious or suspicious (threshold 2)" } },

    -- preferred vendors
    { "preferred vendors exactly at their threshold",
        analysed("file", stats(3, 0, 67), { last_analysis_results = results {
            A = "malicious", B = "malicious", C = "malicious", D = "undetected", E = "undetected" } }),
        { preferred_vendors = FIVE, preferred_threshold = 3 }, "malicious", 3, 0, 70,
        { "3 of 5 preferred vendors say malicious (threshold 3)" } },
    { "preferred vendors one below their threshold",
        analysed("file", stats(2, 0, 68), { last_analysis_results = results {
            A = "malicious", B = "malicious", C = "undetected", D = "undetected", E = "undetected" } }),
        { preferred_vendors = FIVE, preferred_threshold = 3 }, "harmless", 2, 0, 70,
        { "2 of 5 preferred vendors say malicious (threshold 3)",
            "below the thresholds: 2 malicious (threshold 10), 2 malicious or suspicious (threshold 5) of 70 engines" } },
    { "preferred vendors, default threshold 5",
        analysed("file", stats(5, 0, 65), { last_analysis_results = results {
            A = "malicious", B = "malicious", C = "malicious", D = "malicious", E = "malicious" } }),
        { preferred_vendors = FIVE }, "malicious", 5, 0, 70, { "5 of 5 preferred vendors say malicious (threshold 5)" } },
    { "a preferred vendor without a result, one saying suspicious",
        analysed("file", stats(1, 1, 68), { last_analysis_results = results { A = "malicious", B = "suspicious" } }),
        { preferred_vendors = { "A", "B", "Z" }, preferred_threshold = 2 }, "harmless", 1, 1, 70,
        { "1 of 2 preferred vendors say malicious (threshold 2)",
            "below the thresholds: 1 malicious (threshold 10), 2 malicious or suspicious (threshold 5) of 70 engines" } },
    { "the URL's own preferred vendors",
        analysed("url", stats(1, 0, 0, 89), { last_analysis_results = results { A = "malicious", B = "harmless" } }),
        { preferred_vendors = { "A" }, preferred_threshold = 1, url = { preferred_vendors = { "B" } } },
        "harmless", 1, 0, 90, { "0 of 1 preferred vendors say malicious (threshold 1)",
            "below the thresholds: 1 malicious (threshold 10), 1 malicious or suspicious (threshold 5) of 90 engines" } },
    { "a file takes the top level's preferred vendors",
        analysed("file", stats(1, 0, 69), { last_analysis_results = results { A = "malicious", B = "undetected" } }),
        { preferred_vendors = { "A" }, preferred_threshold = 1, url = { preferred_vendors = { "B" } } },
        "malicious", 1, 0, 70, { "1 of 1 preferred vendors say malicious (threshold 1)" } },
    { "popularity comes before preferred vendors",
        analysed("domain", stats(5, 0, 0, 85), { popularity_ranks = ranks { 500 }, last_analysis_results = results {
            A = "malicious", B = "malicious", C = "malicious", D = "malicious", E = "malicious" } }),
        { preferred_vendors = FIVE }, "harmless", 5, 0, 90, { "popular domain: average rank 500 ≤ 10000" } },
    { "preferred vendors without per-engine results", analysed("file", stats(12, 0, 58)),
        { preferred_vendors = { "A" } }, "malicious", 12, 0, 70,
        { "preferred vendors not checked: no per-engine results", "12 of 70 engines say malicious (threshold 10)" } },

    -- crowdsourced YARA, Sigma and IDS (files)
    { "one YARA rule (threshold 1)", analysed("file", stats(0, 0, 70), { crowdsourced_yara_results = yara(1) }), nil,
        "suspicious", 0, 0, 70, { BELOW_0_OF_70, "1 crowdsourced YARA rule matches (threshold 1)" } },
    { "YARA and suspicious by engines make it malicious",
        analysed("file", stats(5, 0, 65), { crowdsourced_yara_results = yara(2) }), nil, "malicious", 5, 0, 70,
        { "5 of 70 engines say malicious or suspicious (threshold 5)", "2 crowdsourced YARA rules match (threshold 1)",
            "suspicious both by engine count and by crowdsourced rules" } },
    { "YARA exactly at threshold 3", analysed("file", stats(0, 0, 70), { crowdsourced_yara_results = yara(3) }),
        { yara = 3 }, "suspicious", 0, 0, 70, { BELOW_0_OF_70, "3 crowdsourced YARA rules match (threshold 3)" } },
    { "YARA one below threshold 3", analysed("file", stats(0, 0, 70), { crowdsourced_yara_results = yara(2) }),
        { yara = 3 }, "harmless", 0, 0, 70, { BELOW_0_OF_70 } },
    { "YARA turned off", analysed("file", stats(0, 0, 70), { crowdsourced_yara_results = yara(2) }),
        { yara = false }, "harmless", 0, 0, 70, { BELOW_0_OF_70 } },
    { "Sigma high + critical exactly at 5",
        analysed("file", stats(0, 0, 70), { sigma_analysis_stats = { high = 3, critical = 2, medium = 7, low = 1 } }),
        nil, "suspicious", 0, 0, 70, { BELOW_0_OF_70, "5 high or critical Sigma matches (threshold 5)" } },
    { "Sigma high + critical one below 5 (medium does not count)",
        analysed("file", stats(0, 0, 70), { sigma_analysis_stats = { high = 4, critical = 0, medium = 9, low = 0 } }),
        nil, "harmless", 0, 0, 70, { BELOW_0_OF_70 } },
    { "the file's own Sigma threshold",
        analysed("file", stats(0, 0, 70), { sigma_analysis_stats = { high = 0, critical = 2 } }), { file = { sigma = 2 } },
        "suspicious", 0, 0, 70, { BELOW_0_OF_70, "2 high or critical Sigma matches (threshold 2)" } },
    { "Sigma turned off", analysed("file", stats(0, 0, 70), { sigma_analysis_stats = { high = 9, critical = 0 } }),
        { sigma = false }, "harmless", 0, 0, 70, { BELOW_0_OF_70 } },
    { "IDS high + critical exactly at 5",
        analysed("file", stats(0, 0, 70), { crowdsourced_ids_stats = { high = 2, critical = 3, info = 40 } }), nil,
        "suspicious", 0, 0, 70, { BELOW_0_OF_70, "5 high or critical crowdsourced IDS alerts (threshold 5)" } },
    { "IDS high one below 5 (info does not count)",
        analysed("file", stats(0, 0, 70), { crowdsourced_ids_stats = { high = 4, info = 20 } }), nil,
        "harmless", 0, 0, 70, { BELOW_0_OF_70 } },
    { "IDS turned off", analysed("file", stats(0, 0, 70), { crowdsourced_ids_stats = { high = 5 } }), { ids = false },
        "harmless", 0, 0, 70, { BELOW_0_OF_70 } },
    { "YARA is checked first and alone names the match",
        analysed("file", stats(0, 0, 70), { crowdsourced_yara_results = yara(1), sigma_analysis_stats = { high = 9 } }),
        nil, "suspicious", 0, 0, 70, { BELOW_0_OF_70, "1 crowdsourced YARA rule matches (threshold 1)" } },
    { "crowdsourced rules judge files only",
        analysed("url", stats(0, 0, 0, 90), { crowdsourced_yara_results = yara(3), sigma_analysis_stats = { high = 9 } }),
        nil, "harmless", 0, 0, 90,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 90 engines" } },

    -- popularity (domains, URLs, IPs; rank threshold 10000)
    { "average rank exactly at the threshold",
        analysed("domain", stats(20, 0, 0, 70), { popularity_ranks = ranks { 10000 } }),
        nil, "harmless", 20, 0, 90, { "popular domain: average rank 10000 ≤ 10000" } },
    { "average rank just above the threshold",
        analysed("domain", stats(20, 0, 0, 70), { popularity_ranks = ranks { 10000, 10001 } }), nil, "malicious", 20, 0, 90,
        { "not popular enough: average rank 10000.5 > 10000", "20 of 90 engines say malicious (threshold 10)" } },
    { "one rank one above the threshold", analysed("domain", stats(20, 0, 0, 70), { popularity_ranks = ranks { 10001 } }),
        nil, "malicious", 20, 0, 90,
        { "not popular enough: average rank 10001 > 10000", "20 of 90 engines say malicious (threshold 10)" } },
    { "popularity turned off", analysed("domain", stats(20, 0, 0, 70), { popularity_ranks = ranks { 5 } }),
        { popularity_rank = false }, "malicious", 20, 0, 90, { "20 of 90 engines say malicious (threshold 10)" } },
    { "the domain's own rank threshold",
        analysed("domain", stats(20, 0, 0, 70), { popularity_ranks = ranks { 100, 300 } }),
        { domain = { popularity_rank = 100 } }, "malicious", 20, 0, 90,
        { "not popular enough: average rank 200 > 100", "20 of 90 engines say malicious (threshold 10)" } },
    { "a URL's own rank threshold over a top level false",
        analysed("url", stats(20, 0, 0, 70), { popularity_ranks = ranks { 50 } }),
        { popularity_rank = false, url = { popularity_rank = 1000 } }, "harmless", 20, 0, 90,
        { "popular URL: average rank 50 ≤ 1000" } },
    { "a popular IP address", analysed("ip", stats(20, 0, 0, 70), { popularity_ranks = ranks { 9999 } }), nil,
        "harmless", 20, 0, 90, { "popular IP address: average rank 9999 ≤ 10000" } },
    { "popularity does not judge files", analysed("file", stats(20, 0, 50), { popularity_ranks = ranks { 1 } }), nil,
        "malicious", 20, 0, 70, { "20 of 70 engines say malicious (threshold 10)" } },
    { "no ranks: no popularity rule", analysed("domain", stats(0, 0, 10, 80), { popularity_ranks = {} }), nil,
        "harmless", 0, 0, 90,
        { "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 90 engines" } },
    { "a ranking without a rank counts as 0",
        analysed("domain", stats(0, 0, 10, 80), { popularity_ranks = { A = { rank = 30000 }, B = { timestamp = 1 } } }),
        nil, "harmless", 0, 0, 90, { "not popular enough: average rank 15000 > 10000",
            "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 90 engines" } },
    { "popular without an analysis", object("domain", { popularity_ranks = ranks { 42 } }), nil, "harmless", 0, 0, 0,
        { "popular domain: average rank 42 ≤ 10000" } },

    -- no analysis
    { "a file without last_analysis_stats", object("file", { md5 = ("0"):rep(32) }), nil, "unknown", 0, 0, 0,
        { NO_STATS } },
    { "a file no engine has judged yet", analysed("file", stats(0, 0, 0, 0, { ["type-unsupported"] = 5 })), nil,
        "unknown", 0, 0, 0, { "no analysis yet: no engine has given a verdict (0 results)" } },
    { "a domain with null stats", object("domain", { last_analysis_stats = vt.null }), nil, "unknown", 0, 0, 0,
        { NO_STATS, NOT_COUNTED } },
    { "a queued analysis",
        { type = "analysis", id = "x", attributes = { status = "queued", stats = stats(0), results = {} },
            meta = { file_info = { sha256 = IDS.file } } },
        nil, "unknown", 0, 0, 0, { "no analysis yet: the analysis is queued" } },
    { "a completed file analysis takes the file thresholds",
        { type = "analysis", id = "y", attributes = { status = "completed", stats = stats(12, 0, 58), results = {} },
            meta = { file_info = { sha256 = IDS.file } } }, { malicious = 20, file = { malicious = 12 } },
        "malicious", 12, 0, 70, { "12 of 70 engines say malicious (threshold 12)" } },

    { "an analysis with url_info and file_info takes the URL thresholds",
        { type = "analysis", id = "u", attributes = { status = "completed", stats = stats(5, 0, 0, 85), results = {} },
            meta = { url_info = { id = IDS.url }, file_info = { sha256 = IDS.file } } }, { url = { malicious = 5 } },
        "malicious", 5, 0, 90, { "5 of 90 engines say malicious (threshold 5)" } },

    -- crafted v2 bodies
    { "v2 file report at the malicious threshold",
        { response_code = 1, md5 = ("1"):rep(32), positives = 10, total = 60, scans = {} }, nil, "malicious", 10, 0, 60,
        { "10 of 60 engines say malicious (threshold 10)" } },
    { "v2 URL report one below the suspicious threshold",
        { response_code = 1, url = "http://x.example/", positives = 4, total = 66 }, nil, "harmless", 4, 0, 66,
        { "below the thresholds: 4 malicious (threshold 10), 4 malicious or suspicious (threshold 5) of 66 engines" } },
    { "v2 URL report at the suspicious threshold",
        { response_code = 1, url = "http://x.example/", positives = 5, total = 66 }, nil, "suspicious", 5, 0, 66,
        { "5 of 66 engines say malicious or suspicious (threshold 5)" } },
    { "v2 preferred vendors read the scans",
        { response_code = 1, sha256 = IDS.file, positives = 2, total = 3,
            scans = { A = { detected = true }, B = { detected = true }, C = { detected = false } } },
        { preferred_vendors = { "A", "B", "C" }, preferred_threshold = 2 }, "malicious", 2, 0, 3,
        { "2 of 3 preferred vendors say malicious (threshold 2)" } },
    { "v2 still queued", { response_code = -2, resource = "x", verbose_msg = "Your resource is queued for analysis" },
        nil, "unknown", 0, 0, 0, { "no report yet: response_code -2 (Your resource is queued for analysis)" } },
    { "v2 domain: Alexa rank one above, three related files at the threshold",
        v2_domain({ 10, 10, 10 }, { ["Alexa rank"] = 10001 }), { related = true }, "malicious", 0, 0, 0,
        { "not popular enough: average rank 10001 > 10000", "a v2 domain report has no engine verdicts of its own",
            "communicating files (3 counted): 3 malicious (threshold 3), 3 malicious or suspicious (threshold 2)" } },
    { "v2 domain: two related files, one below the malicious threshold", v2_domain { 10, 10 }, { related = true },
        "suspicious", 0, 0, 0,
        { "a v2 domain report has no engine verdicts of its own",
            "communicating files (2 counted): 2 malicious (threshold 3), 2 malicious or suspicious (threshold 2)",
            "downloaded files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)",
            "referrer files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)" } },
    { "v2 domain: one suspicious related file, one below", v2_domain { 9 }, { related = true }, "harmless", 0, 0, 0,
        { "a v2 domain report has no engine verdicts of its own",
            "communicating files (1 counted): 0 malicious (threshold 3), 1 malicious or suspicious (threshold 2)",
            "downloaded files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)",
            "referrer files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)" } },
    { "v2 domain: only the latest 20 related files count", v2_domain(twenty_then_bad()), { related = true },
        "harmless", 0, 0, 0,
        { "a v2 domain report has no engine verdicts of its own",
            "communicating files (20 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)",
            "downloaded files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)",
            "referrer files (0 counted): 0 malicious (threshold 3), 0 malicious or suspicious (threshold 2)" } },
    { "v2 domain: related files are judged with the file thresholds", v2_domain { 2, 2, 2 },
        { related = true, file = { malicious = 2 } }, "malicious", 0, 0, 0,
        { "a v2 domain report has no engine verdicts of its own",
            "communicating files (3 counted): 3 malicious (threshold 3), 3 malicious or suspicious (threshold 2)" } },
    { "v2 domain: the domain's own related thresholds", v2_domain { 10, 10, 10 },
        { related = true, domain = { related_malicious = 4 } }, "suspicious", 0, 0, 0,
        { "a v2 domain report has no engine verdicts of its own",
            "communicating files (3 counted): 3 malicious (threshold 4), 3 malicious or suspicious (threshold 2)",
            "downloaded files (0 counted): 0 malicious (threshold 4), 0 malicious or suspicious (threshold 2)",
            "referrer files (0 counted): 0 malicious (threshold 4), 0 malicious or suspicious (threshold 2)" } },
    { "v2 IP report with related turned off",
        { response_code = 1, asn = 64500, detected_communicating_samples = { { positives = 50, total = 70 } } },
        { related = false }, "unknown", 0, 0, 0,
        { "a v2 IP address report has no engine verdicts of its own", NOT_COUNTED } },
}

describe("vt.verdict on a table of objects", function()
    for _, case in ipairs(CASES) do
        local name, obj, policy, want, malicious, suspicious, total, reasons = table.unpack(case)
        it(name .. " -> " .. want, function()
            local res = assert(verdict.verdict(obj, policy))
            assert.equal(want, res.verdict)
            assert.equal(SCORE[want], res.score)
            assert.same({ malicious, suspicious, total }, { res.malicious, res.suspicious, res.total })
            assert.is_true(#res.reasons > 0)
            assert.same(reasons, res.reasons)
            assert.equal(0, res.requests)
            for _, n in ipairs { res.score, res.malicious, res.suspicious, res.total, res.requests } do
                assert.equal("integer", math.type(n))
            end
        end)
    end

    it("has a row for every sample object and report", function()
        local missing = {}
        for _, dir in ipairs { V3, V2, MORE } do
            local p = assert(io.popen("ls " .. dir))
            for name in p:lines() do
                -- the relationship page is a list of resolutions, not an object to judge
                -- (nor are the embedded relationships of 1.1.1.1)
                if name:match "%.json$" and not USED[dir .. name]
                    and name ~= "ninoseki_domain_resolutions_page_cursor.200.json"
                    and name ~= "relationships_embedded_ip_1.1.1.1.json" then
                    missing[#missing + 1] = dir .. name
                end
            end
            p:close()
        end
        assert.same({}, missing)
    end)
end)

describe("vt.verdict policies", function()
    local obj = analysed("file", stats(5, 0, 65))

    local function raises_naming(key, fn)
        local ok, err = pcall(fn)
        assert.is_false(ok)
        assert.is_string(err)
        assert.truthy(err:find("'" .. key .. "'", 1, true), err)
    end

    local INVALID = {
        { "malicous", { malicous = 5 } },
        { "file.malicious", { file = { malicious = "10" } } },
        { "file.malicious", { file = { malicious = 0 } } },
        { "suspicious", { suspicious = 2.5 } },
        { "popularity_rank", { popularity_rank = true } },
        { "related_malicious", { related_malicious = false } },
        { "preferred_vendors", { preferred_vendors = "Microsoft" } },
        { "preferred_vendors", { preferred_vendors = { "Microsoft", 5 } } },
        { "domain.preferred_vendors", { domain = { preferred_vendors = { x = "Microsoft" } } } },
        { "related", { related = "yes" } },
        { "client", { client = "c" } },
        { "file", { file = 5 } },
        { "url", { url = false } },
        { "client", { client = false } },
        { "file.client", { file = { client = "c" } } },
        { "domain.sigma", { domain = { sigma = -1 } } },
        { "ip.bogus", { ip = { bogus = 1 } } },
        { "url.yara", '{"url": {"yara": "1"}}' },
    }
    for _, case in ipairs(INVALID) do
        local key, policy = case[1], case[2]
        it("raises naming '" .. key .. "'", function()
            raises_naming(key, function() verdict.parse_policy(policy) end)
            raises_naming(key, function() verdict.verdict(obj, policy) end)
        end)
    end

    it("says what a key takes", function()
        assert.has_error(function() verdict.parse_policy { file = { malicious = "10" } } end,
            "vt.verdict: policy key 'file.malicious' must be a whole number, 1 or more (got \"10\")")
        assert.has_error(function() verdict.parse_policy { ip = { bogus = 1 } } end,
            "vt.verdict: unknown policy key 'ip.bogus'")
    end)

    it("raises naming 'client' when a v3 look-up needs one", function()
        raises_naming("client", function()
            verdict.verdict(analysed("domain", stats(0, 0, 0, 90)), { related = true })
        end)
    end)

    it("raises when the policy or the object is not a table", function()
        assert.has_error(function() verdict.parse_policy(5) end)
        assert.has_error(function() verdict.verdict("abc") end)
    end)

    it("resolves per type over the top level over XSOAR's defaults", function()
        local p = verdict.parse_policy {
            file = { malicious = 5 }, domain = { popularity_rank = false }, preferred_vendors = { "Microsoft", "Kaspersky" },
            sigma = 7,
        }
        assert.same({
            malicious = 5, suspicious = 5, preferred_vendors = { "Microsoft", "Kaspersky" }, preferred_threshold = 5,
            yara = 1, sigma = 7, ids = 5, popularity_rank = 10000, related = false, related_malicious = 3,
            related_suspicious = 2,
        }, p.file)
        assert.equal(false, p.domain.popularity_rank)
        assert.equal(10, p.url.malicious)
        assert.equal(10000, p.ip.popularity_rank)
        assert.equal(p, verdict.parse_policy(p))
    end)

    it("takes a JSON text, keeps its integers and reads null as not given", function()
        local p = assert(verdict.parse_policy(
            '{"file": {"malicious": 5}, "domain": {"popularity_rank": false}, "preferred_vendors": ["Microsoft"],'
            .. ' "suspicious": null, "url": {"yara": 2}}'))
        assert.equal(5, p.file.malicious)
        assert.equal("integer", math.type(p.file.malicious))
        assert.equal(false, p.domain.popularity_rank)
        assert.same({ "Microsoft" }, p.ip.preferred_vendors)
        assert.equal(5, p.ip.suspicious)
        assert.equal("integer", math.type(p.url.yara))
        local res = assert(verdict.verdict(obj, '{"file": {"malicious": 5}}'))
        assert.same({ "malicious", { "5 of 70 engines say malicious (threshold 5)" } }, { res.verdict, res.reasons })
    end)

    it("returns nil, err for a JSON text that is not an object", function()
        for _, text in ipairs { '{"file": ', "", "5", '"x"' } do
            local p, err = verdict.parse_policy(text)
            assert.is_nil(p)
            assert.equal("InvalidArgument", err.code)
            local res, verr = verdict.verdict(obj, text)
            assert.is_nil(res)
            assert.equal("InvalidArgument", verr.code)
        end
    end)

    it("returns nil, err for what is not an object or a report", function()
        for _, bad in ipairs {
            {},
            { last_analysis_stats = stats(1) }, -- attributes without their object
            { error = { code = "NotFoundError", message = "File not found" } },
            { type = "analysis", id = "z", attributes = { status = "completed", stats = stats(1) } },
            { type = "file", id = "f" },
            { response_code = 1, verbose_msg = "something" },
            { response_code = 1, positives = 3, total = 9 },
        } do
            local res, err = verdict.verdict(bad)
            assert.is_nil(res)
            assert.equal("InvalidArgument", err.code)
        end
    end)

    it("explains a verdict in one line", function()
        local res = assert(verdict.verdict(analysed("file", stats(10, 0, 60), { crowdsourced_yara_results = yara(1) })))
        assert.equal("malicious (score 3): 10 of 70 engines say malicious (threshold 10)", verdict.explain(res))
    end)
end)

-- The fake's related files: item i of a relationship has i malicious engines when i is even, none
-- when odd. With the file thresholds 10 / 5, the first 20 (i = 0..19) hold 5 malicious files
-- (i = 10..18) and 2 suspicious ones (i = 6, 8); a URL's 12 items hold 1 malicious (10) and 2
-- suspicious (6, 8). The fake serves no communicating_files for URLs (400).
describe("vt.verdict related files through a client", function()
    local srv, c
    local HAIKU_BASE = { "not popular enough: average rank 505632.7 > 10000",
        "below the thresholds: 0 malicious (threshold 10), 0 malicious or suspicious (threshold 5) of 94 engines" }

    setup(function()
        srv = fake.start { analysis_steps = 0 }
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5 }
    end)

    teardown(function()
        srv:stop()
    end)

    -- Judges obj; returns the result and the requests the fake received meanwhile ("GET path?query").
    local function judged(obj, policy)
        local seq = #srv:log()
        local res, err = verdict.verdict(obj, policy)
        local sent = {}
        for i, e in ipairs(srv:log()) do
            if i > seq then
                sent[#sent + 1] = e.method .. " " .. e.path .. (e.query ~= "" and "?" .. e.query or "")
            end
        end
        return res, err, sent
    end

    local function with(base, extra)
        local out = {}
        for _, r in ipairs(base) do out[#out + 1] = r end
        for _, r in ipairs(extra) do out[#out + 1] = r end
        return out
    end

    local function haiku() return assert(c:domain "haiku-os.org") end

    it("stops at the first relationship over the malicious threshold: one request", function()
        local res, _, sent = judged(haiku(), { related = true, client = c })
        assert.equal("malicious", res.verdict)
        assert.same(with(HAIKU_BASE, {
            "communicating files (20 counted): 5 malicious (threshold 3), 7 malicious or suspicious (threshold 2)" }),
            res.reasons)
        assert.same({ "GET /api/v3/domains/haiku-os.org/communicating_files?limit=20" }, sent)
        assert.equal(1, res.requests)
        assert.equal(#sent, res.requests)
    end)

    it("reads all three relationships when none decides: three requests", function()
        local res, _, sent = judged(haiku(), { related = true, client = c, related_malicious = 6, related_suspicious = 8 })
        assert.equal("harmless", res.verdict)
        assert.same(with(HAIKU_BASE, {
            "communicating files (20 counted): 5 malicious (threshold 6), 7 malicious or suspicious (threshold 8)",
            "downloaded files (20 counted): 5 malicious (threshold 6), 7 malicious or suspicious (threshold 8)",
            "referrer files (20 counted): 5 malicious (threshold 6), 7 malicious or suspicious (threshold 8)" }),
            res.reasons)
        assert.same({ "GET /api/v3/domains/haiku-os.org/communicating_files?limit=20",
            "GET /api/v3/domains/haiku-os.org/downloaded_files?limit=20",
            "GET /api/v3/domains/haiku-os.org/referrer_files?limit=20" }, sent)
        assert.equal(3, res.requests)
    end)

    it("makes a harmless domain suspicious at the related suspicious threshold", function()
        local res, _, sent = judged(haiku(), { related = true, client = c, domain = {
            related_malicious = 6, related_suspicious = 7 } })
        assert.equal("suspicious", res.verdict)
        assert.equal(3, res.requests)
        assert.equal(#sent, res.requests)
        assert.equal("communicating files (20 counted): 5 malicious (threshold 6), 7 malicious or suspicious (threshold 7)",
            res.reasons[3])
    end)

    it("turns a failed look-up into a reason; suspicious by itself and by related files is malicious", function()
        -- haiku-os.org's related files (synthesised: item i has i detections when i is even) with a
        -- crafted analysis of its own that is suspicious: 5 of 90
        local domain = { type = "domain", id = "haiku-os.org", attributes = { last_analysis_stats = stats(5, 0, 85) } }
        srv:fault { type = "status", status = 400, code = "InvalidArgumentError", message = "bad relationship",
            path = "/api/v3/domains/haiku-os.org/communicating_files" }
        local res, _, sent = judged(domain, { related = true, client = c, domain = {
            related_malicious = 6, related_suspicious = 7 } })
        assert.equal("malicious", res.verdict)
        assert.same({ "5 of 90 engines say malicious or suspicious (threshold 5)",
            "communicating files not counted: InvalidArgumentError (HTTP 400): bad relationship",
            "downloaded files (20 counted): 5 malicious (threshold 6), 7 malicious or suspicious (threshold 7)",
            "suspicious both by its own analysis and by related files" }, res.reasons)
        assert.same({ "GET /api/v3/domains/haiku-os.org/communicating_files?limit=20",
            "GET /api/v3/domains/haiku-os.org/downloaded_files?limit=20" }, sent)
        assert.equal(2, res.requests)
    end)

    it("keeps the other rules' verdict when a look-up is forbidden", function()
        srv:fault { type = "status", status = 403, path = "/api/v3/domains/haiku-os.org/downloaded_files",
            message = "premium only" }
        local res, _, sent = judged(haiku(), { related = true, client = c, related_malicious = 6, related_suspicious = 8 })
        assert.equal("harmless", res.verdict)
        assert.same(with(HAIKU_BASE, {
            "communicating files (20 counted): 5 malicious (threshold 6), 7 malicious or suspicious (threshold 8)",
            "downloaded files not counted: ForbiddenError (HTTP 403): premium only",
            "referrer files (20 counted): 5 malicious (threshold 6), 7 malicious or suspicious (threshold 8)" }),
            res.reasons)
        assert.equal(3, #sent)
        assert.equal(3, res.requests)
    end)

    it("returns nil, err when the related look-up's key is wrong or missing", function()
        local wrong = vt.client { apikey = "not-the-key", base_url = srv.url, quota_state = false }
        local res, err, sent = judged(haiku(), { related = true, client = wrong })
        assert.is_nil(res)
        assert.equal("WrongCredentialsError", err.code)
        assert.equal(1, #sent)
        srv:fault { type = "status", status = 401, path = "/api/v3/domains/haiku-os.org/communicating_files" }
        res, err, sent = judged(haiku(), { related = true, client = c })
        assert.is_nil(res)
        assert.equal("AuthenticationRequiredError", err.code)
        assert.equal(1, #sent)
    end)

    it("judges an object without analysis by its related files", function()
        local ip = assert(c:ip "1.1.1.1")
        local res, _, sent = judged(ip, { related = true, client = c })
        assert.equal("malicious", res.verdict)
        -- 1.1.1.1's recorded communicating files: 6 of the first 20 have 10 or more detections
        -- (30, 34, 33, 18, 12, 55), none is suspicious by the file rules (1, 2 and 3 detections are fewer than 5)
        assert.same({ NO_STATS,
            "communicating files (20 counted): 6 malicious (threshold 3), 6 malicious or suspicious (threshold 2)" },
            res.reasons)
        assert.same({ 1, 1 }, { #sent, res.requests })
        res, _, sent = judged(ip, { related = true, client = c, related_malicious = 7, related_suspicious = 8 })
        assert.equal("harmless", res.verdict)
        assert.same({ 3, 3 }, { #sent, res.requests })
    end)

    it("costs nothing when related files cannot change the verdict or are not asked", function()
        local no_lookup = {
            { "popular", assert(c:domain "virustotal.com"), { related = true, client = c }, "harmless" },
            { "already malicious", object("domain", { last_analysis_stats = stats(20, 0, 0, 70) }),
                { related = true, client = c }, "malicious" },
            { "a file", assert(c:file "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"),
                { related = true, client = c }, "suspicious" },
            { "off for domains", haiku(), { related = true, client = c, domain = { related = false } }, "harmless" },
            { "not asked", haiku(), { client = c }, "harmless" },
        }
        for _, case in ipairs(no_lookup) do
            local res, _, sent = judged(case[2], case[3])
            assert.equal(case[4], res.verdict, case[1])
            assert.same({ 0, 0 }, { #sent, res.requests }, case[1])
        end
    end)

    it("yields to the loop in coroutine mode while it looks related files up", function()
        local yielding = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local obj = haiku()
        local loop = require("vt.loop").new(yielding)
        local task = loop:spawn(function() return verdict.verdict(obj, { related = true, client = yielding }) end)
        assert.is_false(task.done) -- waiting for the first look-up
        loop:run()
        assert.is_true(task.ok, tostring(task.error))
        local res = task.results[1]
        assert.same({ "malicious", 1 }, { res.verdict, res.requests })
    end)

    it("counts the requests the client sent, retries included", function()
        local retrying = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retry_base = 0.01 }
        srv:fault { type = "status", status = 503, path = "/api/v3/domains/haiku-os.org/communicating_files" }
        local res, _, sent = judged(haiku(), { related = true, client = retrying })
        assert.equal("malicious", res.verdict)
        assert.same({ 2, 2 }, { #sent, res.requests })
    end)
end)
