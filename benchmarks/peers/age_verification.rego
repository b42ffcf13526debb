# policies/age_verification.yaml in Rego (OPA v1 syntax), for benchmarks/bench_engine.py.
# `decision` is the reason of the outcome; the benchmark maps it to (status, reason, conditions).
package age_verification

import rego.v1

declared := ["sanctions_listed", "citizen_valid", "is_over_18", "has_credential"]

# Fail closed: a declared fact that is absent, or present but not a boolean.
missing if {
	some name in declared
	not name in object.keys(input)
}

invalid if {
	some name in declared
	not is_boolean(input[name])
}

decision := "missing_evidence" if missing
else := "invalid_evidence" if invalid
else := "sanctioned" if input.sanctions_listed
else := "invalid_citizen" if not input.citizen_valid
else := "underage" if not input.is_over_18
else := "all_checks_passed" if input.has_credential
else := "missing_credential"
