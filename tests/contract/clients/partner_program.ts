// A partner's program against the TypeScript types generated from openapi/openapi.json
// (openapi-typescript) and openapi-fetch. tests/contract/test_clients.py generates
// `generated/referrals.ts` and runs `tsc --strict --noEmit` on this file.

import createClient from "openapi-fetch";

import type { components, paths } from "./generated/referrals";

type ReferralCreate = components["schemas"]["ReferralCreate"];
type Problem = components["schemas"]["Problem"];
type Outcome = components["schemas"]["Outcome"];

export const referral: ReferralCreate = {
  referrer: { name: "Sam Carter", role: "health_visitor" },
  infant: {
    given_name: "Alex",
    family_name: "Doe",
    nhs_number: "9434765919",
    date_of_birth: "2026-06-01",
  },
  caregivers: [{ given_name: "Jo", family_name: "Doe", relationship: "mother" }],
  postcode: "OX4 1AA",
  concerns: { codes: ["bonding_difficulties"], duration_weeks: 6 },
  risk_factors: ["domestic_abuse"],
  safeguarding: { immediate_risk: false, child_protection_plan: false, child_in_need_plan: false },
  consent: { caregiver_consent: true, recorded_on: "2026-11-20" },
};

// A 422 names each field and why; any other problem has its detail and request id.
export function explain(problem: Problem): string {
  if (problem.status === 422 && problem.errors) {
    return problem.errors.map((error) => `${error.field}: ${error.message}`).join("; ");
  }
  return `${problem.title}: ${problem.detail} (request ${problem.request_id})`;
}

export async function submitAndFollow(
  baseUrl: string,
  token: string,
  idempotencyKey: string,
): Promise<string> {
  const client = createClient<paths>({ baseUrl });
  const headers = { Authorization: `Bearer ${token}` };
  const created = await client.POST("/v1/referrals", {
    body: referral,
    params: { header: { "Idempotency-Key": idempotencyKey } },
    headers,
  });
  if (created.error !== undefined) {
    return explain(created.error);
  }
  const nhsNumber: string | null | undefined = created.data.infant.nhs_number;
  const outcome: Outcome = created.data.decision.outcome;
  const status = await client.GET("/v1/referrals/{referral_id}/status", {
    params: { path: { referral_id: created.data.id } },
    headers,
  });
  if (status.error !== undefined) {
    return explain(status.error);
  }
  const waiting: boolean = status.data.status === "awaiting_triage";
  return `${status.data.reference} (${nhsNumber}): ${outcome}, awaiting triage: ${waiting}`;
}
