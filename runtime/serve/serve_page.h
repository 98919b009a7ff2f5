/* serve_page.h — GET /: a small self-contained chat page (no external
 * assets). It streams /v1/chat/completions with fetch() and reads the SSE
 * lines itself; shows the model name (from /v1/models) and tokens/s. */
#ifndef QILIN_RUNTIME_SERVE_PAGE_H
#define QILIN_RUNTIME_SERVE_PAGE_H

static const char serve_page_html[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>qilin</title><style>"
    "body{font-family:sans-serif;max-width:48em;margin:2em auto;padding:0 1em}"
    "#log div{white-space:pre-wrap;margin:.5em 0;padding:.5em;border-radius:6px}"
    ".user{background:#eef}.assistant{background:#f4f4f4}#rate{color:#888;font-size:small}"
    "form{display:flex;gap:.5em}textarea{flex:1}</style></head><body>"
    "<h3>qilin <span id=\"model\"></span></h3><div id=\"log\"></div><div id=\"rate\"></div>"
    "<form id=\"f\"><textarea id=\"q\" rows=\"3\" placeholder=\"Ask something\"></textarea>"
    "<button id=\"send\">Send</button></form><script>\n"
    "const messages=[];let model='';\n"
    "fetch('/v1/models').then(r=>r.json()).then(j=>{model=j.data[0].id;"
    "document.getElementById('model').textContent='('+model+')';}).catch(()=>{});\n"
    "function add(role,text){const d=document.createElement('div');d.className=role;d.textContent=text;"
    "document.getElementById('log').appendChild(d);return d;}\n"
    "document.getElementById('f').onsubmit=async e=>{e.preventDefault();const q=document.getElementById('q');"
    "const text=q.value.trim();if(!text)return;q.value='';add('user',text);messages.push({role:'user',content:text});"
    "const out=add('assistant','');let answer='',n=0;const t0=performance.now();"
    "const r=await fetch('/v1/chat/completions',{method:'POST',headers:{'Content-Type':'application/json'},"
    "body:JSON.stringify({model:model,messages:messages,stream:true,stream_options:{include_usage:true}})});"
    "if(!r.ok){out.textContent='error: '+(await r.text());return;}"
    "const rd=r.body.getReader(),dec=new TextDecoder();let buf='';"
    "for(;;){const {value,done}=await rd.read();if(done)break;buf+=dec.decode(value,{stream:true});"
    "let i;while((i=buf.indexOf('\\n\\n'))>=0){const line=buf.slice(0,i);buf=buf.slice(i+2);"
    "if(!line.startsWith('data: ')||line==='data: [DONE]')continue;const c=JSON.parse(line.slice(6));"
    "if(c.usage)n=c.usage.completion_tokens;if(c.error){out.textContent+='\\nerror: '+c.error.message;continue;}"
    "const d=c.choices&&c.choices[0]&&c.choices[0].delta;if(d&&d.content){answer+=d.content;out.textContent=answer;}}}"
    "messages.push({role:'assistant',content:answer});const s=(performance.now()-t0)/1000;"
    "document.getElementById('rate').textContent=n+' tokens in '+s.toFixed(2)+' s ('+(n/s).toFixed(1)+' tokens/s)';};\n"
    "</script></body></html>\n";

#endif
