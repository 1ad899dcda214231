import { ErrorReason } from "./gen/accountbalance/v1/records_pb.js";

/**
 * The refusal reasons of the spec (section 4), as they travel in google.rpc.ErrorInfo.reason
 * and in REST `code`: the contract's ErrorReason names without their prefix. Derived from the
 * generated enum, so a reason added to the contract appears here on the next release.
 */
export type Reason = Exclude<keyof typeof ErrorReason, "UNSPECIFIED">;

/** Every reason the contract defines. */
export const REASONS: readonly Reason[] = Object.keys(ErrorReason).filter(
  (k): k is Reason => Number.isNaN(Number(k)) && k !== "UNSPECIFIED",
);

export function isReason(value: string): value is Reason {
  return (REASONS as readonly string[]).includes(value);
}
