-- Argo CD health check for BatchJob (llmbatch.io/v1alpha1).
-- Install: resource.customizations.health.llmbatch.io_BatchJob in argocd-cm
-- (see argocd-cm-patch.yaml beside this file).
--
-- Phase -> health:
--   Succeeded                                                  -> Healthy
--   Failed, Expired                                            -> Degraded
--   Validating, Queued, Running, Finalizing, Cancelling        -> Progressing
--   Suspended                                                  -> Suspended
--   Cancelled with spec.cancel: true                           -> Healthy
--   Cancelled with spec.cancel unset                           -> Degraded
-- A cancel declared in Git is the desired state reached, so it must not page anyone;
-- a batch cancelled behind Git's back (gateway, kubectl) did not do what Git says.
-- No status yet, or a status older than the spec (observedGeneration behind) -> Progressing.

local hs = {}

local function describe(status)
  local parts = {}
  if status.progress ~= nil and status.progress ~= "" then
    table.insert(parts, status.progress .. " requests")
  end
  if status.message ~= nil and status.message ~= "" then
    table.insert(parts, status.message)
  elseif status.reason ~= nil and status.reason ~= "" then
    table.insert(parts, status.reason)
  end
  if #parts == 0 then
    return status.phase
  end
  return status.phase .. ": " .. table.concat(parts, "; ")
end

local function condition_true(status, ctype)
  if status.conditions == nil then
    return false
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype and c.status == "True" then
      return true
    end
  end
  return false
end

if obj.status == nil or obj.status.phase == nil or obj.status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the llmbatch operator to accept the BatchJob"
  return hs
end

local status = obj.status
local phase = status.phase
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Expired" then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
elseif phase == "Cancelled" then
  if obj.spec ~= nil and obj.spec.cancel == true then
    hs.status = "Healthy"
  else
    hs.status = "Degraded"
  end
elseif phase == "Validating" or phase == "Queued" or phase == "Running"
    or phase == "Finalizing" or phase == "Cancelling" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
  hs.message = "Unknown BatchJob phase " .. tostring(phase)
  return hs
end

hs.message = describe(status)
if hs.status == "Progressing" and condition_true(status, "SLAAtRisk") then
  hs.message = hs.message .. " (SLA at risk: ETA past the deadline)"
end
return hs
