-- An LDoc filter for tools/doc_coverage.lua: prints one line per documented item,
-- "item<TAB>module<TAB>name<TAB>kind" (`client:file` in module vt, `new` in module vt.loop).
-- LDoc runs it under its own Lua (5.1): `LUA_PATH="tools/?.lua;;" ldoc --filter ldoc_items.print .`
local ldoc_items = {}

function ldoc_items.print(modules)
    for mod in modules:iter() do
        for item in mod.items:iter() do
            io.write("item\t", mod.name, "\t", item.name, "\t", item.type, "\n")
        end
    end
end

return ldoc_items
