-- Health of Weft's kinds (mesh.weft.dev, policy.weft.dev, split.smi-spec.io) from
-- kstatus's conditions, which the Weft controller writes with the generation it saw:
-- Stalled (waits for the user) is Degraded, Reconciling or a stale status is
-- Progressing, Ready is Healthy. An object with no status yet is Progressing, not
-- Healthy: the controller has not looked at it.
local hs = { status = "Progressing", message = "Waiting for the Weft controller to report status" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
if obj.status.observedGeneration ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the Weft controller to observe generation " .. tostring(generation)
  return hs
end
local current = {}
for _, c in ipairs(obj.status.conditions) do
  if c.observedGeneration == nil or c.observedGeneration == generation then
    current[c.type] = c
  end
end
local function isTrue(c)
  return c ~= nil and c.status == "True"
end
if isTrue(current["Stalled"]) then
  return { status = "Degraded", message = current["Stalled"].message }
end
if isTrue(current["Reconciling"]) then
  return { status = "Progressing", message = current["Reconciling"].message }
end
if isTrue(current["Ready"]) then
  return { status = "Healthy", message = current["Ready"].message }
end
if current["Ready"] ~= nil then
  hs.message = current["Ready"].message
end
return hs
